"""Callbacks a benchmarked bert_imdb run carries: a clock of training time and tokens, and the GPU sync check."""

import time

import lightning as L
import torch

from bert_imdb.data.collate import LENGTHS
from bert_imdb.models.flops import FlopCounter, head_positions


class TrainingClock(L.Callback):
    """Time spent training (validation excluded) and the tokens trained on, real and padded; and the
    time fit's validations took, and the reviews they saw."""

    def __init__(self):
        self.seconds = self.eval_seconds = 0.0
        self.fit_ended: float | None = None  # time.perf_counter() when fit ended (a test may follow)
        self.real_tokens = self.padded_tokens = self.flops = self.eval_reviews = 0
        self._since: float | None = None
        self._eval_since = 0.0

    def _start(self) -> None:
        self._since = time.perf_counter()

    def _stop(self) -> None:
        if self._since is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop()
        self._eval_since = time.perf_counter()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking:
            self.eval_reviews += len(batch["input_ids"])

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.eval_seconds += time.perf_counter() - self._eval_since
            self._start()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_fit_end(self, trainer, pl_module) -> None:
        self.fit_ended = time.perf_counter()

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._count = FlopCounter(pl_module.model)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Counted on the host, from the lengths the collator read: the clock must not wait for the device.
        lengths = batch[LENGTHS]
        self.real_tokens += sum(lengths)
        self.padded_tokens += batch["input_ids"].numel()
        self.flops += self._count(lengths, head_positions(pl_module, batch))


class SyncCheck(L.Callback):
    def __init__(self, first_step: int = 2):
        """From the end of training step `first_step` to the end of the run's last step, any CUDA call that
        waits for the device raises (torch.cuda.set_sync_debug_mode("error")): in training steps, and in
        validation steps from their batch's start to the end of its hooks. Not at a validation's end, where
        the metrics sync on purpose, once. Runs last among the callbacks, so that theirs are checked too.
        Give the run no log step in between.

        Args:
            first_step: The step after which the check starts (the first ones warm up).
        """
        self.first_step = first_step
        self._training = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        trainer.callbacks.remove(self)
        trainer.callbacks.append(self)

    def _checking(self, on: bool) -> None:
        torch.cuda.set_sync_debug_mode("error" if on else "default")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._training = self.first_step <= trainer.global_step < trainer.max_steps
        self._checking(self._training)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._checking(False)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._checking(trainer.global_step >= self.first_step)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._checking(False)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._checking(self._training)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._checking(False)
