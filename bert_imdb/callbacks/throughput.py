"""Training throughput in real tokens and model FLOPs, counted on the host from what the collator knows,
so that no training step waits for the accelerator to report it."""

import time

import torch
from lightning.fabric.utilities.throughput import Throughput, get_available_flops
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from bert_imdb.data.collate import LENGTHS
from bert_imdb.models.flops import FlopCounter, head_positions


def compute_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if "bf16" in precision else torch.float16 if "16" in precision else torch.float32


class TokenThroughputMonitor(Callback):
    def __init__(self, window_size: int = 5):
        """Every `trainer.log_every_n_steps` optimizer steps: `train/device/items_per_sec`, real (non-padding)
        tokens per second per device, `train/device/samples_per_sec`, reviews per second,
        `train/device/flops_per_sec`, model FLOPs on real tokens (and `train/device/mfu` where Lightning
        knows the device's peak), all over the last `window_size` logging intervals; and
        `train/padding_fraction`, the padding share of the tokens processed since the last log. At the end
        of each epoch, `train/batch_shapes`: how many distinct (batch, length) shapes it trained on.

        Counted on the host from the lengths the collator read before padding: the device is waited for once
        per logging interval, to time it, never in between (Lightning's ThroughputMonitor synchronises after
        every batch and reads its counts from device tensors).

        Args:
            window_size: Logging intervals in the moving window (at least 2); nothing is logged before it is
                full.
        """
        self.window_size = window_size
        self._start: float | None = None  # set when training starts

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        self._counter = FlopCounter(pl_module.model)
        device = trainer.strategy.root_device
        available = get_available_flops(device, compute_dtype(str(trainer.precision)))
        self._throughput = Throughput(
            available_flops=available, world_size=trainer.world_size, window_size=self.window_size
        )
        self._batches = self._samples = self._tokens = self._flops = 0
        self._since_log = [0, 0]  # real and padded tokens since the last log
        self._paused = 0.0
        self._start = self._logged_step = None
        self._shapes: set[tuple[int, ...]] = set()

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Not called when a run resumes inside an epoch: that epoch's shapes count from the resume.
        self._shapes = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        lengths = batch[LENGTHS]
        self._batches += 1
        self._samples += len(lengths)
        self._tokens += sum(lengths)
        self._flops += self._counter(lengths, head_positions(pl_module, batch))
        self._since_log[0] += sum(lengths)
        self._since_log[1] += batch["input_ids"].numel()
        self._shapes.add(tuple(batch["input_ids"].shape))
        step = trainer.global_step
        if step % max(trainer.log_every_n_steps, 1) == 0 and step != self._logged_step:
            self._logged_step = step
            self._log(trainer)

    def _log(self, trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # once per logging interval: the time must include the work queued
        self._throughput.update(
            time=time.perf_counter() - self._start - self._paused,
            batches=self._batches,
            samples=self._samples,
            lengths=self._tokens,
            flops=self._flops,
        )
        self._flops = 0
        real, padded = self._since_log
        self._since_log = [0, 0]
        metrics = {f"train/{k}": v for k, v in self._throughput.compute().items() if "/" in k}
        metrics["train/padding_fraction"] = 1 - real / padded
        self._write(trainer, metrics)

    @rank_zero_only
    def _write(self, trainer, metrics: dict) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._write(trainer, {"train/batch_shapes": len(self._shapes)})

    # Validation inside fit is not training: its time is left out of the training rates.
    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._start is not None:
            if trainer.strategy.root_device.type == "cuda":
                torch.cuda.synchronize()
            self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._start is not None:
            self._paused += time.perf_counter() - self._validation_start
