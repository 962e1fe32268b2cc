"""A stop asked for inside an accumulation window waits for the window's optimizer step."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer
from probes import StopAtBatch
from torch.utils.data import DataLoader, TensorDataset

from bert_imdb.workarounds.whole_window_stop import WholeWindowEpochLoop


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.validated_after: list[int] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.validated_after.append(self.trainer.fit_loop.epoch_loop.batch_progress.current.ready)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(40, 4)), batch_size=4)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)


def fit(module: Tiny, whole_windows: bool, **settings) -> L.Trainer:
    """One epoch in accumulation windows of 3, with Lightning's epoch loop or the whole-window one."""
    trainer = quiet_trainer(accumulate_grad_batches=3, max_epochs=1, num_sanity_val_steps=0, **settings)
    if whole_windows:
        WholeWindowEpochLoop.install(trainer)
    trainer.fit(module)
    return trainer


@pytest.mark.parametrize("whole_windows", [False, True], ids=["Lightning 2.6", "whole windows"])
def test_a_stop_inside_an_accumulation_window(whole_windows):
    module = Tiny()
    trainer = fit(module, whole_windows, callbacks=[StopAtBatch(4)])
    done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
    if not whole_windows:
        # Lightning's own loop: validation and the epoch's end after batch 4, one batch into a window of 3
        # whose gradient is never applied. When this fails, Lightning stops at a window's end itself, and
        # WholeWindowEpochLoop can go.
        assert (done, trainer.global_step, module.validated_after) == (4, 1, [4])
    else:
        assert (done, trainer.global_step, module.validated_after) == (6, 2, [6])


class Worsening(Tiny):
    """A validation score that only gets worse: early stopping stops at the second validation."""

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.log("val/score", float(len(self.validated_after)))


@pytest.mark.parametrize("whole_windows", [False, True], ids=["Lightning 2.6", "whole windows"])
def test_early_stopping_at_a_validation_inside_an_accumulation_window(whole_windows):
    """Validations every 4 batches in windows of 3: the second, after batch 8, is inside a window."""
    module = Worsening()
    stop = L.pytorch.callbacks.EarlyStopping("val/score", patience=1, check_on_train_epoch_end=False)
    trainer = fit(module, whole_windows, val_check_interval=4, callbacks=[stop])
    done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
    if not whole_windows:
        # Stopped after batch 8, one optimizer step short: batches 7 and 8 trained, never applied.
        assert (done, trainer.global_step, module.validated_after) == (8, 2, [4, 8])
    else:
        # The window finished, then validated where the run stops (as a stop is, with its checkpoints).
        assert (done, trainer.global_step, module.validated_after) == (9, 3, [4, 8, 9])
