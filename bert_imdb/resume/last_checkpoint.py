"""LastCheckpoint: last.ckpt, what `--ckpt_path last` and preempted jobs resume from, saved only where a
resume is exact."""

from lightning.pytorch.callbacks import ModelCheckpoint

from bert_imdb.resume.safe_stop import optimizer_step_taken
from bert_imdb.workarounds.checkpoint_at_epoch_end import save_at_epoch_end
from bert_imdb.workarounds.validation_follows import validation_follows


class LastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for last.ckpt: at the end of every epoch, after its validation, every
    `every_n_train_steps` steps if set, except after an epoch's last batch, where the epoch's own save
    follows, and at the end of the fit if no save came at its last step.

    Lightning 2.6 resumes a checkpoint saved after an epoch's last batch (before its validation) wrongly: it
    counts the epoch as done without validating it, then starts the next epoch from the saved end of the
    data, which is at once exhausted, so a whole epoch is never trained (seen: a 48-step run resumed from
    step 16 of 16 ended at step 32). Checkpoints at the end of an epoch resume exactly
    (tests/resume/test_exact_resume.py), so that is where this one saves instead. With `every_n_train_steps` set,
    ModelCheckpoint saves at no epoch's end, so the epoch's save is made here, through ModelCheckpoint's own save
    (workarounds/checkpoint_at_epoch_end.py).

    Likewise a step save due at a batch that a validation follows is made once that validation has run:
    Lightning 2.6 resumes a checkpoint saved before it without it (workarounds/validation_follows.py), so
    early stopping and the best checkpoint would miss it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._after_validation = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_last_batch or not optimizer_step_taken(trainer, batch_idx):
            # A `train_time_interval` save falls due at any batch: inside an accumulation window it would
            # keep none of the window's gradients. The project's one rule (SafeStop's saves follow it too);
            # Lightning 2.6 also skips a save at a global step already saved.
            return
        if validation_follows(trainer):
            self._after_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if self._after_validation:
            self._after_validation = False
            # ModelCheckpoint's own decision (every N steps, or a time interval), taken at the same step.
            super().on_train_batch_end(trainer, pl_module, None, None, trainer.fit_loop.epoch_loop.batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.every_n_epochs == 0:
            save_at_epoch_end(self, trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        # A fit that ends leaves last.ckpt whatever the validation settings: with check_val_every_n_epoch
        # 2 and one epoch, no validation came, and so no save. Skipped where one was made at this step.
        if self.save_top_k != 0 and not trainer.sanity_checking:
            save_at_epoch_end(self, trainer)
