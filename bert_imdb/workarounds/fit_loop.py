"""The fit loop, with the two resume fixes Lightning 2.6 needs (read from 2.6.6, `lightning.pytorch.loops.
fit_loop`), and the exact resume's restoring done where loops, not callbacks, control training.

Private names: `_FitLoop`, `_Loop.restarting`, `_loaded_from_state_dict`, `_combined_loader_states_to_load`,
`_combined_loader`,
`_CombinedLoader._load_state_dicts`, `_data_fetcher`. When to drop: tests/workarounds/test_fit_loop.py
fails when Lightning's plain loop stops needing a fix (and on any of these names disappearing).
"""

from lightning.pytorch.loops import _Loop
from lightning.pytorch.loops.fit_loop import _FitLoop
from torch.optim.lr_scheduler import LambdaLR


class ExactResumeFitLoop(_FitLoop):
    """Lightning's fit loop, resuming exactly.

    1. An epoch that ended is never a restart. Lightning 2.6 (`_FitLoop.restarting`) treats every resume of
       a run with `max_steps` as a restart inside an epoch, even when the checkpoint's epoch was over (saved
       in `on_train_epoch_end`, as last.ckpt is): the next epoch then finds its batch counters at the end of
       the previous one, ends at once, and is counted as trained. A run killed after epoch 0 of 3 and
       resumed stopped at "max_epochs=3 reached" having trained two epochs (Lightning's issue #19617 is a
       neighbour). Lightning already does the right thing when only `max_epochs` is set.
    2. The saved data position is applied. Lightning never applies it when `configure_optimizers` asked
       for `trainer.estimated_stepping_batches`, as ours do: that builds the training iterator before the
       checkpoint is restored, and the loop then keeps it.
    3. The random generators are restored (ExactResume keeps them), after every `on_train_start` hook:
       nothing that draws random numbers while a run starts comes after. Resumed at an epoch's end, the
       next epoch's iterator is begun from them, as the stopped run began it after its checkpoint (it draws
       the DataLoader's base seed); its first batch is only fetched once the epoch starts, after the sampler
       is told its epoch.
    """

    @_Loop.restarting.setter
    def restarting(self, restarting: bool) -> None:
        progress = self.epoch_progress.current
        epoch_unfinished = any(v != progress.processed for v in (progress.ready, progress.started))
        _Loop.restarting.fset(self, restarting and epoch_unfinished)

    def load_state_dict(self, state_dict: dict, prefix: str = "") -> None:
        """A checkpoint saved at the end of an epoch that stopped before its data ran out (at `max_steps`, or
        a stop between two steps) resumes inside that epoch: a run continued with a larger `max_steps`
        trains the batches the epoch had left, as an uninterrupted run would, instead of starting the next
        epoch (Lightning counts the epoch processed once its end hooks ran, however it ended)."""
        super().load_state_dict(state_dict, prefix)
        epochs, batches = self.epoch_progress, self.epoch_loop.batch_progress
        ended = epochs.current.processed == epochs.current.started and epochs.current.processed > 0
        if ended and batches.current.ready > 0 and not batches.is_last_batch:
            for counts in (epochs.total, epochs.current):
                counts.processed -= 1
                counts.completed = min(counts.completed, counts.processed)
            self.restarting = True

    def on_run_start(self) -> None:
        super().on_run_start()
        positions, self._combined_loader_states_to_load = self._combined_loader_states_to_load, []
        mid_epoch = self.restarted_mid_epoch
        if positions and self._combined_loader is not None and mid_epoch:
            self._combined_loader._load_state_dicts(positions)
            iter(self._data_fetcher)  # a fresh iterator, from the restored position
        if self._loaded_from_state_dict:
            self._replan_learning_rates()
        # resume/exact_resume.py's ExactResume, by what it does: workarounds import nothing of the project.
        resumers = [c for c in self.trainer.callbacks if hasattr(c, "restore_generators")]
        restored = any([resumer.restore_generators(self.trainer) for resumer in resumers])
        if restored and not mid_epoch:
            iter(self._data_fetcher)

    def _replan_learning_rates(self) -> None:
        """A continuation's learning rate is its own plan's at the step it resumes from. The scheduler's
        function comes from this run's configure_optimizers (sized for its max_steps or max_epochs) but the
        optimizer's rate was restored from the checkpoint, the stopped plan's: a run continued with a longer
        plan would take its first step at the old plan's rate (zero, if that plan had ended). With the same
        plan this changes nothing."""
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, LambdaLR):
                rates = [
                    base * f(scheduler.last_epoch)
                    for base, f in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
                ]
                for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
                    group["lr"] = rate

    @classmethod
    def install(cls, trainer) -> None:
        """Swap the trainer's fit loop for this one (`Trainer.fit_loop` is settable), keeping its epoch loop."""
        old = trainer.fit_loop
        loop = cls(trainer, min_epochs=old.min_epochs, max_epochs=old.max_epochs)
        loop.epoch_loop = old.epoch_loop
        trainer.fit_loop = loop
