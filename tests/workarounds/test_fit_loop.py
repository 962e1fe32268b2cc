"""workarounds/fit_loop.py: each fix fails here on Lightning's own loop, and passes on ours. When a test's
first assertion fails, Lightning has fixed that behaviour and the fix can go."""

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torchdata.stateful_dataloader import StatefulDataLoader

from bert_imdb.workarounds.fit_loop import ExactResumeFitLoop


def finished_epoch(trainer: L.Trainer) -> bool:
    """Whether the trainer's fit loop, loaded from a checkpoint saved in `on_train_epoch_end`, restarts."""
    progress = trainer.fit_loop.epoch_progress
    for counts in (progress.total, progress.current):
        counts.ready = counts.started = counts.processed = 1
        counts.completed = 0
    trainer.fit_loop.restarting = True  # what loading a checkpoint sets
    return trainer.fit_loop.restarting


def test_lightning_restarts_a_finished_epoch_with_max_steps_and_the_workaround_does_not():
    plain = L.Trainer(max_steps=24, max_epochs=3, logger=False, enable_checkpointing=False)
    assert finished_epoch(plain), (
        "Lightning no longer restarts a finished epoch: drop fix 1 of ExactResumeFitLoop"
    )
    fixed = L.Trainer(max_steps=24, max_epochs=3, logger=False, enable_checkpointing=False)
    ExactResumeFitLoop.install(fixed)
    assert not finished_epoch(fixed)
    assert fixed.fit_loop.epoch_loop.max_steps == 24 and fixed.max_epochs == 3


class Recorder(L.LightningModule):
    """Records the items it trains on; sizes its optimizer by `estimated_stepping_batches`, as ours do."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.seen += batch.tolist()
        return self.layer(batch.float().view(-1, 1)).sum()

    def configure_optimizers(self):
        assert self.trainer.estimated_stepping_batches > 0
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return StatefulDataLoader(list(range(8)), batch_size=1)


def resumed_items(tmp_path, fixed: bool) -> list[int]:
    """The items a run resumed from step 3 of its 8 trains on. By epochs, not max_steps: the step estimate
    then builds the training loader, before the checkpoint is restored."""
    tmp_path = tmp_path / ("fixed" if fixed else "plain")
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    at_step_3 = ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=3, save_top_k=-1)
    L.Trainer(max_epochs=1, callbacks=[at_step_3], **quiet).fit(Recorder())
    second, model = L.Trainer(max_epochs=1, enable_checkpointing=False, **quiet), Recorder()
    if fixed:
        ExactResumeFitLoop.install(second)
    second.fit(model, ckpt_path=tmp_path / "step=3.ckpt")
    return model.seen


def test_lightning_drops_the_saved_data_position_and_the_workaround_applies_it(tmp_path):
    plain = resumed_items(tmp_path, fixed=False)
    assert plain != [3, 4, 5, 6, 7], (
        "Lightning now applies the data position: drop fix 2 of ExactResumeFitLoop"
    )
    assert resumed_items(tmp_path, fixed=True) == [3, 4, 5, 6, 7]
