"""MaskedLanguageModel: further pre-training of BERT on IMDb text, with masked language modelling and,
optionally, next sentence prediction, as BERT was pre-trained."""

from typing import ClassVar, Literal

import lightning as L
import torch
from torch.nn import functional as F
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy
from transformers import AutoConfig, AutoModelForMaskedLM, BertForPreTraining

from bert_imdb.data.collate import LENGTHS, MASKED_INDEX
from bert_imdb.errors import UserError
from bert_imdb.models.inputs import model_inputs
from bert_imdb.models.optimizer import (
    adamw_with_linear_warmup,
    apply_optimizer_settings,
    check_optimizer_settings,
)
from bert_imdb.models.pretrained import (
    accepted_inputs,
    attention_settings,
    encoder_config,
    from_pretrained,
    load_encoder,
)
from bert_imdb.workarounds.attention_interface import takes_prepared_masks
from bert_imdb.workarounds.weighted_mean import WeightedMean

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# exp() of a mean loss above about 88.7 overflows float32 (a diverged run): perplexity is capped at exp(88).
MAX_LOG_PERPLEXITY = 88.0


def perplexity(mean_loss: torch.Tensor) -> torch.Tensor:
    """exp of the mean masked-token loss, capped near float32's largest value instead of overflowing to inf."""
    return torch.exp(mean_loss.float().clamp(max=MAX_LOG_PERPLEXITY))


def load_nsp_model(name: str, **kwargs) -> BertForPreTraining:
    """BertForPreTraining from `name`, which must carry a trained next-sentence-prediction head: a fresh one
    would only learn NSP from scratch, which is not what `nsp` promises."""
    config = from_pretrained(AutoConfig, name)
    if config.model_type != "bert":
        raise UserError(
            f"{name} is a {config.model_type} model; NSP needs a BERT checkpoint with its pre-training heads "
            "(such as bert-base-uncased): set model.nsp false to pre-train with MLM only"
        )
    model, info = from_pretrained(
        BertForPreTraining, name, output_loading_info=True, dtype=torch.float32, **kwargs
    )
    if any(key.startswith("cls.seq_relationship") for key in info["missing_keys"]):
        raise UserError(
            f"{name} has no next-sentence-prediction head: set model.nsp false to pre-train with MLM only, "
            "or start from a checkpoint pre-trained with NSP, such as bert-base-uncased"
        )
    return model


class MaskedLanguageModel(L.LightningModule):
    # What the CLI's ModelCheckpoint keeps the best of, unless told otherwise.
    checkpoint_metric = ("val/loss", "min")
    # What an export's model card shows: the validation that scored the weights (MLM has no test).
    card_metrics: ClassVar[dict[str, tuple[str, ...]]] = {
        "validation": ("val/perplexity", "val/masked_acc", "val/loss"),
        "test": (),
    }

    def __init__(
        self,
        model_name_or_path: str = "bert-base-uncased",
        nsp: bool = False,
        learning_rate: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        attention_dropout: float | None = 0.0,
        attn_implementation: Literal["sdpa", "eager"] = "sdpa",
        head_on_masked_only: bool = True,
    ):
        """BERT pre-trained further on IMDb text with masked language modelling (and NSP).

        Args:
            model_name_or_path: Hub id or local folder of a BERT-style encoder; the tokenizer follows it.
            nsp: Add next sentence prediction (BertForPreTraining, loss = MLM + NSP); linked to data.nsp.
            learning_rate: Peak AdamW learning rate, reached after warmup and decayed linearly to zero.
            weight_decay: AdamW weight decay, applied to all weights but biases and LayerNorm.
            warmup_ratio: Share of all optimizer steps spent warming the learning rate up from zero.
            attention_dropout: Dropout on attention weights while training; null keeps the model's own
                (0.1 for BERT). At 0, PyTorch's fused attention kernel runs instead of an explicit attention
                matrix and its dropout mask (benchmarks/results/README.md).
            attn_implementation: "sdpa", PyTorch's fused scaled_dot_product_attention, or "eager",
                transformers' reference implementation (on a CPU with bf16, faster on 128-token blocks: benchmarks/results/README.md).
            head_on_masked_only: Run the masked-LM head (and its vocabulary-wide projection) only on the
                positions that are scored, about 15%, instead of on every token: the same loss, faster
                (benchmarks/results/README.md). Needs BERT's head layout (`cls.predictions`); other models run it on all.
        """
        super().__init__()
        check_optimizer_settings(learning_rate, weight_decay, warmup_ratio)
        # Not LightningCLI's `_instantiator`: how the CLI built it, no hyperparameter (hparams.yaml, checkpoints).
        self.save_hyperparameters(ignore="_instantiator")
        if nsp:
            attention = attention_settings(
                encoder_config(model_name_or_path), attention_dropout, attn_implementation
            )
            self.model, self.attention = load_nsp_model(model_name_or_path, **attention), attn_implementation
        else:
            # Full precision weights: mixed precision is the Trainer's job (`trainer.precision`).
            self.model, self.attention = load_encoder(
                AutoModelForMaskedLM,
                model_name_or_path,
                attention_dropout,
                attn_implementation,
                dtype=torch.float32,
            )
        self.inputs = accepted_inputs(self.model, MODEL_INPUTS)
        self.prepared_masks = takes_prepared_masks(self.model)
        # from_pretrained returns the model in eval mode, and Lightning keeps module modes as it finds them.
        self.model.train()
        # validate_args=False, and WeightedMean for MeanMetric: their checks read the device on every update
        # (torch.unique, isnan().any()), which would make the host wait on each evaluation step.
        self.val_mlm_loss = WeightedMean()
        # NSP's loss, a mean over sentence pairs: val/loss is the two means added, as the training loss is.
        self.val_nsp_loss = WeightedMean() if nsp else None
        self.val_masked_acc = MulticlassAccuracy(
            num_classes=self.model.config.vocab_size, average="micro", ignore_index=-100, validate_args=False
        )
        self.val_nsp_acc = BinaryAccuracy(validate_args=False) if nsp else None
        # BERT's heads (cls.predictions, and cls.seq_relationship with NSP) run apart from the encoder.
        self.head_on_scored_positions = head_on_masked_only and hasattr(
            getattr(self.model, "cls", None), "predictions"
        )

    def _forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits and labels of the scored positions only, [n, vocabulary] and [n], and the NSP logits.

        The collator lists the scored positions (`masked_index`, flat over the batch), computed on the host,
        so picking them needs no device-to-host read of the mask (boolean indexing would wait for one).
        """
        inputs = model_inputs(batch, self.inputs, self.attention, self.model.dtype, self.prepared_masks)
        index = batch[MASKED_INDEX]
        labels = batch["labels"].flatten().index_select(0, index)
        if not self.head_on_scored_positions:
            output = self.model(**inputs)
            logits = output.prediction_logits if self.hparams.nsp else output.logits
            nsp = output.seq_relationship_logits if self.hparams.nsp else None
            return logits.flatten(0, 1).index_select(0, index), labels, nsp
        encoded = self.model.base_model(**inputs)
        hidden = encoded.last_hidden_state.flatten(0, 1).index_select(0, index)
        nsp = self.model.cls.seq_relationship(encoded.pooler_output) if self.hparams.nsp else None
        return self.model.cls.predictions(hidden), labels, nsp

    def _loss(self, batch: dict, logits: torch.Tensor, labels: torch.Tensor, nsp: torch.Tensor | None):
        """The masked-token cross-entropy (mean over scored tokens), plus NSP's: Hugging Face's own loss."""
        mlm = F.cross_entropy(logits.float(), labels)
        if nsp is None:
            return mlm, mlm
        return mlm + F.cross_entropy(nsp.float(), batch["next_sentence_label"]), mlm

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # Nothing here waits for the device (the loss is read only when Lightning logs it).
        loss, _ = self._loss(batch, *self._forward(batch))
        self.log("train/loss", loss, batch_size=len(batch[LENGTHS]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # Updates only: processes may hold different numbers of batches, and the metrics sync once, at the end.
        logits, labels, nsp = self._forward(batch)
        # Means over the masked tokens and the pairs of the whole validation set, not of batch means: the
        # same for any batch size and number of processes. Perplexity is exp of the first.
        token_loss = F.cross_entropy(logits.float(), labels)
        self.val_mlm_loss.update(token_loss, weight=torch.full_like(token_loss, len(labels)))
        self.val_masked_acc.update(logits.argmax(-1), labels)
        if nsp is not None:
            pair_loss = F.cross_entropy(nsp.float(), batch["next_sentence_label"])
            self.val_nsp_loss.update(pair_loss, weight=torch.full_like(pair_loss, len(nsp)))
            self.val_nsp_acc.update(nsp.float().softmax(-1)[:, 1], batch["next_sentence_label"])

    def on_validation_epoch_start(self) -> None:
        # Reset at the start: a reset under `validate`'s inference mode would leave inference tensors that a
        # later update, in `fit`'s validation, may not modify.
        for metric in (self.val_mlm_loss, self.val_nsp_loss, self.val_masked_acc, self.val_nsp_acc):
            if metric is not None:
                metric.reset()

    def on_validation_epoch_end(self) -> None:
        mean_loss = self.val_mlm_loss.compute()  # syncs all ranks
        loss = mean_loss if self.val_nsp_loss is None else mean_loss + self.val_nsp_loss.compute()
        self.log("val/loss", loss)
        self.log("val/masked_acc", self.val_masked_acc)
        if self.val_nsp_acc is not None:
            self.log("val/nsp_acc", self.val_nsp_acc)
        self.log("val/mlm_loss", mean_loss)
        self.log("val/perplexity", perplexity(mean_loss))

    def configure_optimizers(self):
        return adamw_with_linear_warmup(self)

    def apply_optimizer_settings(self, **changed) -> None:
        """A resume's learning rate or weight decay changed on purpose (resume/exact_resume.py)."""
        apply_optimizer_settings(self, **changed)
