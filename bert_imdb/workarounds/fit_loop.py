"""The fit loop, with the two resume fixes Lightning 2.6 needs (read from 2.6.6, `lightning.pytorch.loops.
fit_loop`), and the exact resume's restoring done where loops, not callbacks, control training.

Private names: `_FitLoop`, `_Loop.restarting`, `_combined_loader_states_to_load`, `_combined_loader`,
`_CombinedLoader._load_state_dicts`, `_data_fetcher`. When to drop: tests/workarounds/test_fit_loop.py
fails when Lightning's plain loop stops needing a fix (and on any of these names disappearing).
"""

from lightning.pytorch.loops import _Loop
from lightning.pytorch.loops.fit_loop import _FitLoop

from bert_imdb.callbacks.exact_resume import ExactResume


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

    def on_run_start(self) -> None:
        super().on_run_start()
        positions, self._combined_loader_states_to_load = self._combined_loader_states_to_load, []
        mid_epoch = self.restarted_mid_epoch
        if positions and self._combined_loader is not None and mid_epoch:
            self._combined_loader._load_state_dicts(positions)
            iter(self._data_fetcher)  # a fresh iterator, from the restored position
        resumers = [c for c in self.trainer.callbacks if isinstance(c, ExactResume)]
        restored = any([resumer.restore_generators(self.trainer) for resumer in resumers])
        if restored and not mid_epoch:
            iter(self._data_fetcher)

    @classmethod
    def install(cls, trainer) -> None:
        """Swap the trainer's fit loop for this one (`Trainer.fit_loop` is settable), keeping its epoch loop."""
        old = trainer.fit_loop
        loop = cls(trainer, min_epochs=old.min_epochs, max_epochs=old.max_epochs)
        loop.epoch_loop = old.epoch_loop
        trainer.fit_loop = loop
