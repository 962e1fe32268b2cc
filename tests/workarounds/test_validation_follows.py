"""workarounds/validation_follows.py: it answers what Lightning then does, and Lightning still resumes a
checkpoint saved before a batch's validation without that validation. When the second test's first
assertion fails, Lightning has fixed that behaviour and the workaround can go."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from bert_imdb.workarounds.validation_follows import validation_follows


class Validated(L.LightningModule):
    """Records the global batch index each validation follows."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.validated_after: list[int] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch.float().view(-1, 1)).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_start(self):
        self.validated_after.append(self.trainer.fit_loop.epoch_loop.total_batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(list(range(7)), batch_size=1)

    def val_dataloader(self):
        return DataLoader([0], batch_size=1)


class Predicted(Callback):
    def __init__(self):
        self.predicted: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if validation_follows(trainer):
            self.predicted.append(trainer.fit_loop.epoch_loop.total_batch_idx)


@pytest.mark.parametrize(
    "settings",
    [{"val_check_interval": 3}, {"val_check_interval": 1}, {}, {"max_steps": 9}, {"val_check_interval": 0.5}],
)
def test_it_answers_which_batches_lightning_validates_after(settings, tmp_path):
    module, predicted = Validated(), Predicted()
    trainer = quiet_trainer(
        **{"max_epochs": 2, **settings},
        callbacks=[predicted],
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(module)
    assert module.validated_after, "nothing validated"
    assert predicted.predicted == module.validated_after


def test_lightning_resumes_a_checkpoint_saved_before_a_validation_without_it(tmp_path):
    # Validation after batches 2, 5 (val_check_interval 3); ModelCheckpoint saves at batch 5's end, before it.
    def trainer(**more):
        return quiet_trainer(
            max_epochs=1,
            val_check_interval=3,
            default_root_dir=tmp_path,
            enable_checkpointing=True,
            num_sanity_val_steps=0,
            **more,
        )

    saving = ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=6, save_top_k=-1)
    module = Validated()
    trainer(callbacks=[saving]).fit(module)
    assert module.validated_after == [2, 5]
    resumed = Validated()
    trainer().fit(resumed, ckpt_path=tmp_path / "step=6.ckpt")
    assert resumed.validated_after == [], (
        "Lightning now runs the validation that followed the saved batch: drop workarounds/validation_follows.py"
    )
