"""SentimentClassifier: a Hugging Face BERT with a two-class head, fine-tuned on IMDb reviews."""

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import get_parameter_names

from bert_imdb.data import LABEL_NAMES
from bert_imdb.errors import UserError
from bert_imdb.pretrained import from_pretrained


class SentimentClassifier(L.LightningModule):
    def __init__(
        self,
        model_name_or_path: str = "bert-base-uncased",
        learning_rate: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
    ):
        """BERT fine-tuned for IMDb sentiment (neg/pos).

        Args:
            model_name_or_path: Hub id or local folder of a pre-trained encoder; the tokenizer follows it.
            learning_rate: Peak AdamW learning rate, reached after warmup and decayed linearly to zero.
            weight_decay: AdamW weight decay, applied to all weights but biases and LayerNorm.
            warmup_ratio: Share of all optimizer steps spent warming the learning rate up from zero.
        """
        super().__init__()
        if not 0 <= warmup_ratio < 1:
            raise UserError(f"model.warmup_ratio={warmup_ratio} must lie in [0, 1), e.g. 0.1")
        self.save_hyperparameters()
        self.model = from_pretrained(
            AutoModelForSequenceClassification,
            model_name_or_path,
            num_labels=len(LABEL_NAMES),
            id2label=dict(enumerate(LABEL_NAMES)),
            label2id={name: i for i, name in enumerate(LABEL_NAMES)},
            # Full precision weights: mixed precision is the Trainer's job (`trainer.precision`).
            dtype=torch.float32,
        )
        # from_pretrained returns the model in eval mode, and Lightning keeps module modes as it finds them.
        self.model.train()
        metrics = MetricCollection({"acc": BinaryAccuracy(), "f1": BinaryF1Score()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(**batch).logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch: dict, metrics: MetricCollection, prefix: str) -> None:
        output = self.model(**batch)
        metrics.update(output.logits.argmax(-1), batch["labels"])
        self.log(f"{prefix}/loss", output.loss, sync_dist=True, batch_size=len(batch["labels"]))
        self.log_dict(metrics)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        ids = batch.pop("id")
        probabilities = self(batch).float().softmax(-1)
        confidence, label = probabilities.max(-1)
        return {
            "id": ids,
            "label": [LABEL_NAMES[i] for i in label.tolist()],
            "probability": confidence.tolist(),
            "pos_probability": probabilities[:, LABEL_NAMES.index("pos")].tolist(),
        }

    def configure_optimizers(self):
        decay = set(get_parameter_names(self.model, [nn.LayerNorm], ["bias"]))
        groups = [
            {"name": "decay", "params": [p for n, p in self.model.named_parameters() if n in decay]},
            {
                "name": "no_decay",
                "params": [p for n, p in self.model.named_parameters() if n not in decay],
                "weight_decay": 0.0,
            },
        ]
        optimizer = torch.optim.AdamW(
            groups, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        total_steps = self.trainer.estimated_stepping_batches
        scheduler = get_linear_schedule_with_warmup(
            optimizer,
            num_warmup_steps=int(self.hparams.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
