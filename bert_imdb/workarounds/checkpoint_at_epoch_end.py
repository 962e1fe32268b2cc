"""Saving a ModelCheckpoint's file at an epoch's end when it is set to save every N steps, which Lightning
2.6 offers no public call for (read from 2.6.6, `ModelCheckpoint.on_train_epoch_end`).

Private names: `ModelCheckpoint._should_skip_saving_checkpoint`, `_save_topk_checkpoint`,
`_monitor_candidates`. When to drop: tests/workarounds/test_private_names.py fails when these
names change; the resume grid in tests/resume/test_exact_resume.py fails if their behaviour does.
"""

from lightning.pytorch.callbacks import ModelCheckpoint


def save_at_epoch_end(callback: ModelCheckpoint, trainer) -> None:
    """Save `callback`'s checkpoint now, as it saves at an epoch's end, unless Lightning would skip it
    (sanity check, fast_dev_run, already saved at this step)."""
    if not callback._should_skip_saving_checkpoint(trainer):
        callback._save_topk_checkpoint(trainer, callback._monitor_candidates(trainer))
