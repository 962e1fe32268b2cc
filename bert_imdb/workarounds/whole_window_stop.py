"""A stop asked for inside a gradient-accumulation window waits for the window's optimizer step.

Read from Lightning 2.6.6, `lightning.pytorch.loops.training_epoch_loop._TrainingEpochLoop.done`: once
`trainer.should_stop` is set (Lightning's Timer at `max_time`, a callback), the epoch ends after the batch
that set it, wherever that batch falls in an accumulation window. The epoch's end then validates and
saves, and those checkpoints count the window's batches as trained while their gradients, never applied,
are in no checkpoint: a run resumed from them (with a larger `max_time`, say) differs from one that never
stopped. Finishing the window first makes every stop an exact point, as SafeStop's signal stops are.

Private names: `_TrainingEpochLoop`, its `_is_training_done` and `_should_check_val_fx` (which validates at
once on `should_stop`). When to drop: tests/workarounds/
test_whole_window_stop.py fails when Lightning's own loop stops at a window's end.
"""

from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop


class WholeWindowEpochLoop(_TrainingEpochLoop):
    """Lightning's training epoch loop, leaving on `should_stop` only at an optimizer-step boundary."""

    def _stopping_inside_window(self) -> bool:
        progress = self.batch_progress
        inside = (
            progress.current.ready % self.trainer.accumulate_grad_batches != 0 and not progress.is_last_batch
        )
        return self.trainer.should_stop and inside and not self._is_training_done

    @property
    def done(self) -> bool:
        return False if self._stopping_inside_window() else super().done

    def _should_check_val_fx(self, data_fetcher) -> bool:
        # Lightning validates at once on should_stop, and the best checkpoint is saved there: at the window's
        # end instead, where the stop now comes.
        return False if self._stopping_inside_window() else super()._should_check_val_fx(data_fetcher)

    @classmethod
    def install(cls, trainer) -> None:
        """Swap the fit loop's epoch loop for this one (`_FitLoop.epoch_loop` is a plain attribute)."""
        old = trainer.fit_loop.epoch_loop
        trainer.fit_loop.epoch_loop = cls(trainer, min_steps=old.min_steps, max_steps=old.max_steps)
