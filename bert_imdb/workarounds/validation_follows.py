"""Whether Lightning validates right after the training batch that just ended, which Lightning 2.6 decides
only after the batch's hooks and offers no public call for (read from 2.6.6,
`_TrainingEpochLoop.on_advance_end` and `_should_check_val_fx`).

Needed because Lightning 2.6 resumes a checkpoint saved at a batch's end (`on_train_batch_end`, where
ModelCheckpoint's step saves and SlurmRequeue's are made) without the validation that followed that batch:
on restart `_TrainingEpochLoop.advance` fast-forwards the validation's progress as if it had run. Early
stopping then misses a count and the best checkpoint a candidate, and the resumed run trains on where the
uninterrupted one stopped. Checkpoints saved once that validation has run resume exactly (Lightning then
skips it, rightly), so LastCheckpoint and SlurmRequeue save there instead.

Private names: `_FitLoop._data_fetcher`, `_TrainingEpochLoop._should_check_val_fx`. When to drop:
tests/workarounds/test_validation_follows.py fails when Lightning's resume stops skipping that validation
(and on either name disappearing).
"""


def validation_follows(trainer) -> bool:
    """Whether a validation runs after the current training batch, called from `on_train_batch_end`.

    As Lightning decides it after the hooks: with a `val_check_interval` in seconds, a decision taken a
    moment later may differ."""
    loop = trainer.fit_loop
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))
