"""Training throughput in real tokens and model FLOPs: Lightning's ThroughputMonitor, told how to count."""

import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from torch import nn

# Heads that run once per sequence (on [CLS]), not once per token.
PER_SEQUENCE_HEADS = ("pooler", "classifier", "seq_relationship")


def model_flops(model: nn.Module, lengths: torch.Tensor, backward: bool = True) -> int:
    """Model FLOPs of a step on sequences of these real lengths, forward and (by default) backward.

    The usual count for MFU (Kaplan et al. 2020, PaLM appendix B): forward, 2 FLOPs per weight of every
    linear layer per token it is applied to, plus 4 x layers x hidden x length per token for attention's
    two matmuls (queries x keys, weights x values); backward, twice that. Padding positions are not
    counted: they are wasted work, not model work. Embedding lookups and element-wise operations are
    left out.
    """
    per_token = per_sequence = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if any(head in name for head in PER_SEQUENCE_HEADS):
                per_sequence += module.weight.numel()
            else:
                per_token += module.weight.numel()
    config = model.config
    lengths = lengths.long()
    attention = 4 * config.num_hidden_layers * config.hidden_size * int((lengths**2).sum())
    forward = 2 * (per_token * int(lengths.sum()) + per_sequence * len(lengths)) + attention
    return 3 * forward if backward else forward


class CountsFlops:
    """For LightningModules that hold a Hugging Face model as `self.model` and call `count(batch)` in
    each step: `flops_per_batch`, which Lightning's ThroughputMonitor reads after every batch."""

    _lengths: torch.Tensor | None = None

    def count(self, batch: dict) -> None:
        self._lengths = batch["attention_mask"].sum(1)

    @property
    def flops_per_batch(self) -> int | None:
        # Counted when asked (only the monitor asks): reading the lengths waits for the device.
        if self._lengths is None:
            return None
        return model_flops(self.model, self._lengths, backward=self.training)


def _reviews(batch: dict) -> int:
    return batch["input_ids"].shape[0]


def _real_tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum())


class TokenThroughputMonitor(ThroughputMonitor):
    def __init__(self, window_size: int = 20):
        """Logs `train/device/items_per_sec`, real (non-padding) tokens per second per device,
        `train/device/samples_per_sec`, reviews per second, and `train/device/flops_per_sec`, model FLOPs on
        real tokens (the module's `flops_per_batch`; with `device/mfu` on GPUs Lightning knows the peak of),
        averaged over the last `window_size` batches.

        Args:
            window_size: Batches in the moving window; nothing is logged before it is full.
        """
        super().__init__(batch_size_fn=_reviews, length_fn=_real_tokens, window_size=window_size)
