"""Training throughput in real tokens: Lightning's ThroughputMonitor, told how to count them."""

from lightning.pytorch.callbacks import ThroughputMonitor


def _reviews(batch: dict) -> int:
    return batch["input_ids"].shape[0]


def _real_tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum())


class TokenThroughputMonitor(ThroughputMonitor):
    def __init__(self, window_size: int = 20):
        """Logs `train/device/items_per_sec`, real (non-padding) tokens per second per device, and
        `train/device/samples_per_sec`, reviews per second, averaged over the last `window_size` batches.

        Args:
            window_size: Batches in the moving window; nothing is logged before it is full.
        """
        super().__init__(batch_size_fn=_reviews, length_fn=_real_tokens, window_size=window_size)
