"""SentimentClassifier: a Hugging Face BERT with a two-class head, fine-tuned on IMDb reviews."""

from typing import ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import CatMetric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryConfusionMatrix,
    BinaryF1Score,
    BinaryPrecisionRecallCurve,
)
from transformers import AutoModelForSequenceClassification

from bert_imdb.data.collate import LENGTHS
from bert_imdb.data.imdb import LABEL_NAMES
from bert_imdb.data.truncation import REVIEW_TOKENS
from bert_imdb.distributed import TimedGroup
from bert_imdb.models.compilation import compile_in_place
from bert_imdb.models.inputs import model_inputs
from bert_imdb.models.optimizer import (
    adamw_with_linear_warmup,
    apply_optimizer_settings,
    check_optimizer_settings,
)
from bert_imdb.models.pretrained import accepted_inputs, load_encoder
from bert_imdb.reporting.by_length import DROPPED_EDGES, TOKEN_EDGES, AccuracyByBucket, length_table
from bert_imdb.reporting.calibration import calibration_report, fitted_calibration, reliability_figure
from bert_imdb.reporting.evaluation import ConfidentlyWrong, confidently_wrong_table
from bert_imdb.reporting.hparams import FINAL_SCORES, hyperparameters
from bert_imdb.reporting.intervals import score_intervals
from bert_imdb.reporting.loggers import Reports, say_what_is_left_out
from bert_imdb.reporting.variants import variant_name
from bert_imdb.workarounds.attention_interface import takes_prepared_masks
from bert_imdb.workarounds.weighted_mean import WeightedMean

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")
# The config.json field of a classifier bert_imdb exported: the temperature folded into its head. Its presence
# is also what marks a model folder as trained for this task (export.py writes it).
CALIBRATION_FIELD = "calibration_temperature"


class SentimentClassifier(L.LightningModule):
    # What the CLI's ModelCheckpoint keeps the best of, unless told otherwise.
    checkpoint_metric = ("val/acc", "max")
    # What an export's model card shows: the validation that scored the weights, and a test of them.
    card_metrics: ClassVar[dict[str, tuple[str, ...]]] = {
        "validation": (
            *("val/acc", "val/acc_ci_low", "val/acc_ci_high", "val/f1", "val/f1_ci_low", "val/f1_ci_high"),
            *("val/loss", "val/ece", "val/ece_calibrated", "val/temperature"),
        ),
        "test": tuple(f"hp/test_{name}" for name in FINAL_SCORES),
    }

    def __init__(
        self,
        model_name_or_path: str = "bert-base-uncased",
        learning_rate: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        attention_dropout: float | None = 0.0,
        attn_implementation: Literal["sdpa", "eager"] = "sdpa",
        compile: bool | Literal["reduce-overhead"] = False,
    ):
        """BERT fine-tuned for IMDb sentiment (neg/pos).

        Args:
            model_name_or_path: Hub id or local folder of a pre-trained encoder; the tokenizer follows it.
            learning_rate: Peak AdamW learning rate, reached after warmup and decayed linearly to zero.
            weight_decay: AdamW weight decay, applied to all weights but biases and LayerNorm.
            warmup_ratio: Share of all optimizer steps spent warming the learning rate up from zero.
            attention_dropout: Dropout on attention weights while training; null keeps the model's own
                (0.1 for BERT). At 0, PyTorch's fused attention kernel runs instead of an explicit
                attention matrix and its dropout mask: training steps 1.6x faster on CPU
                (benchmarks/results/README.md).
            attn_implementation: "sdpa", PyTorch's fused scaled_dot_product_attention, or "eager",
                transformers' reference implementation (slower; benchmarks/results/README.md).
            compile: torch.compile the model: true, with dynamic shapes so batches of new lengths do not
                recompile; "reduce-overhead", with CUDA graphs (one captured per batch shape, which
                data.pad_to_multiple_of keeps few on GPUs; on CPUs it compiles without them). Checkpoints
                keep the plain parameter names.
        """
        super().__init__()
        check_optimizer_settings(learning_rate, weight_decay, warmup_ratio)
        # Not LightningCLI's `_instantiator`: how the CLI built it, no hyperparameter (hparams.yaml, checkpoints).
        self.save_hyperparameters(ignore="_instantiator")
        self.model, self.attention = load_encoder(
            AutoModelForSequenceClassification,
            model_name_or_path,
            attention_dropout,
            attn_implementation,
            num_labels=len(LABEL_NAMES),
            id2label=dict(enumerate(LABEL_NAMES)),
            label2id={name: i for i, name in enumerate(LABEL_NAMES)},
            # Full precision weights: mixed precision is the Trainer's job (`trainer.precision`).
            dtype=torch.float32,
        )
        self.inputs = accepted_inputs(self.model, MODEL_INPUTS)
        self.prepared_masks = takes_prepared_masks(self.model)
        # from_pretrained returns the model in eval mode, and Lightning keeps module modes as it finds them.
        self.model.train()
        if compile:
            compile_in_place(self.model, compile)
        # validate_args=False, and WeightedMean for MeanMetric: their checks read the device on every update
        # (torch.unique, isnan().any()), which would make the host wait on each evaluation step.
        scores = MetricCollection(
            {"acc": BinaryAccuracy(validate_args=False), "f1": BinaryF1Score(validate_args=False)}
        )
        splits = ("val", "test")
        self.scores = nn.ModuleDict({split: scores.clone(prefix=f"{split}/") for split in splits})
        # The mean loss over an evaluation's reviews (all processes'), not over its batch means.
        self.losses = nn.ModuleDict({split: WeightedMean() for split in splits})
        self.wrong = {split: ConfidentlyWrong() for split in splits}
        self._gather_group: TimedGroup | None = None  # several processes: made in setup, once all run
        # Each review's margin (logit of pos minus logit of neg) and label, for temperature scaling.
        self.margins = nn.ModuleDict({split: CatMetric(nan_strategy="disable") for split in splits})
        self.labels = nn.ModuleDict({split: CatMetric(nan_strategy="disable") for split in splits})
        self.by_length = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {"tokens": AccuracyByBucket(TOKEN_EDGES), "dropped": AccuracyByBucket(DROPPED_EDGES)}
                )
                for split in splits
            }
        )
        # Divides the logits of predict and of an export: fitted on each validation's reviews, so every
        # checkpoint carries the one fitted on the validation that scored its weights (1.0 until then).
        self.temperature = 1.0
        self.calibration: dict | None = None  # that validation's calibration report, for the model card
        self._loaded_step: int | None = None
        # Trained weights without a checkpoint: fitted in this process, or a bert_imdb export's (its config
        # records the calibration the export folded in).
        self._trained = hasattr(self.model.config, CALIBRATION_FIELD)
        self._fit_data: dict = {}  # the data settings of the checkpoint's fit, when one is evaluated
        # Called on a batch in place of the model, where predict runs another runtime (ONNX Runtime: cli.py).
        self.runtime = None

    def _run(self, batch: dict):
        """The Hugging Face model on a batch, without the ids, texts and lengths that ride along with it."""
        return self.model(
            **model_inputs(batch, self.inputs, self.attention, self.model.dtype, self.prepared_masks)
        )

    def forward(self, batch: dict) -> torch.Tensor:
        if self.runtime is not None:
            return self.runtime(batch)
        return self._run(batch).logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # Nothing here waits for the device: the loss is logged as this process's (every log_every_n_steps
        # steps, when Lightning reads it), without an all-reduce per step or a progress-bar read per step;
        # throughput and padding are counted on the host (TokenThroughputMonitor).
        loss = self._run(batch).loss
        self.log("train/loss", loss, batch_size=len(batch[LENGTHS]))
        return loss

    def _evaluate(self, batch: dict, split: str) -> None:
        # Updates only: nothing here waits for the device or talks to other processes, which may hold a
        # different number of batches (none, with fewer reviews than processes).
        output = self._run(batch)
        logits, labels = output.logits.float(), batch["labels"]
        margin = logits[:, 1] - logits[:, 0]
        pos = torch.sigmoid(margin)  # softmax(logits)[:, 1]
        # Predicted labels, not probabilities: given floats, torchmetrics checks on the host whether they
        # lie in [0, 1] (a device wait per batch, even with validate_args off).
        predicted = (pos >= 0.5).long()
        self.scores[split].update(predicted, labels)
        self.losses[split].update(output.loss, weight=torch.full_like(output.loss, len(labels)))
        self.wrong[split].update(pos, labels, batch["text"])
        # The figures and the calibration are drawn from these at the end of the evaluation.
        self.margins[split].update(margin)
        self.labels[split].update(labels)
        if REVIEW_TOKENS in batch:
            whole, correct = batch[REVIEW_TOKENS], predicted == labels
            self.by_length[split]["tokens"].update(whole, correct)
            self.by_length[split]["dropped"].update(whole - batch["attention_mask"].sum(-1), correct)

    def _records_name(self, split: str) -> str:
        """What an evaluation's records are named: its split, but for a test under other data settings than
        the checkpoint's fit (bert_imdb/reporting/variants.py), and `<split>_untrained` for the weights of
        no checkpoint (validate or test without --ckpt_path: a random classification head), so that no
        table or record passes them off as the model's."""
        if self.trainer.state.fn != "fit" and self._loaded_step is None and not self._trained:
            return f"{split}_untrained"
        if split != "test":
            return split
        return variant_name(self._fit_data, dict(getattr(self.trainer.datamodule, "hparams", {})))

    def _end_evaluation(self, split: str) -> None:
        """Metrics of the whole evaluation over all processes; on rank 0, its figures, PR curve and most
        confidently wrong reviews in TensorBoard. Every process runs it: the metrics sync here, once."""
        name = self._records_name(split)
        self.log_dict({name + key.removeprefix(split): metric for key, metric in self.scores[split].items()})
        self.log(f"{name}/loss", self.losses[split])
        if self.trainer.sanity_checking:
            return
        wrong = self.wrong[split].top(self._gather_group)
        margins, labels = self.margins[split].compute().reshape(-1), self.labels[split].compute().reshape(-1)
        report = self._calibrate(split, name, margins, labels)
        for score, (low, high) in score_intervals(torch.sigmoid(margins) >= 0.5, labels).items():
            # The same on every process (all hold every review's margin): sync_dist only keeps Lightning
            # from warning.
            self.log(f"{name}/{score}_ci_low", low, sync_dist=True)
            self.log(f"{name}/{score}_ci_high", high, sync_dist=True)
        by_length = {kind: metric.compute() for kind, metric in self.by_length[split].items()}
        self._log_by_length(name, by_length)
        if not self.trainer.is_global_zero:
            return
        reports = Reports(self.loggers, self._weights_step())
        # Counted here, once, from every process's reviews (gathered above), not batch by batch: the binned
        # PR curve's update counts with bincount, which waits for the device.
        plots = {
            "confusion_matrix": BinaryConfusionMatrix(sync_on_compute=False),
            "pr_curve": BinaryPrecisionRecallCurve(thresholds=200, sync_on_compute=False),
        }
        for plot, metric in plots.items():
            metric.update(torch.sigmoid(margins), labels.long())
            # Drawn only here, where it is logged, and closed once written.
            reports.figure(f"{name}/{plot}", metric.plot(metric.compute())[0])
        # A tag of its own: TensorBoard gives a tag to one plugin only, so sharing the image's tag left the PR
        # CURVES tab empty and the image unshown.
        reports.pr_curve(f"{name}/precision_recall", plots["pr_curve"].confmat)
        reports.text(f"{name}/confidently_wrong", confidently_wrong_table(wrong))
        reports.figure(f"{name}/reliability", reliability_figure(report))
        reports.text(f"{name}/accuracy_by_length", length_table(by_length["tokens"], by_length["dropped"]))

    def _calibrate(self, split: str, name: str, margins: torch.Tensor, labels: torch.Tensor) -> dict:
        """Validation fits the temperature on its reviews (over all processes, which all get the same
        margins and so the same fit); test applies the checkpoint's. Logs the ECE before and after, under
        `name` (the evaluation's records name)."""
        if split == "val":
            report, refused = fitted_calibration(margins, labels)
            self.temperature = report["temperature"]
            if refused is not None:
                rank_zero_warn(
                    f"the temperature fitted on validation ({refused:.4g}) would raise its ECE: predict and "
                    "export keep the model's own probabilities (temperature 1)"
                )
            self.calibration = {"step": self.global_step, **report}
        else:
            report = calibration_report(margins, labels, self.temperature)
        # Epoch-level values, the same on every process: sync_dist only keeps Lightning from warning.
        for metric, value in (
            ("ece", report["uncalibrated"]["ece"]),
            ("ece_calibrated", report["calibrated"]["ece"]),
            ("temperature", self.temperature),
        ):
            self.log(f"{name}/{metric}", value, sync_dist=True)
        return report

    def _log_by_length(self, records: str, by_length: dict) -> None:
        """Accuracy and review count per length bucket, under `<records>_by_length/` (their own TensorBoard
        section). While fitting, logged like any metric (ValidationRecord keeps them in checkpoints);
        evaluating a checkpoint, written at its step, where the model card of its export finds them
        (Lightning would log them at step 0)."""
        values = {}
        for kind, buckets in by_length.items():
            for name, (reviews, accuracy) in buckets.items():
                values[f"{records}_by_length/reviews_{kind}_{name}"] = float(reviews)
                if reviews:
                    values[f"{records}_by_length/acc_{kind}_{name}"] = accuracy
        if self.trainer.state.fn == "fit":
            for name, value in values.items():
                # The same on every process: sync_dist only keeps Lightning from warning.
                self.log(name, value, sync_dist=True)
        elif self.trainer.is_global_zero:
            Reports(self.loggers, self._weights_step()).scalars(values)

    def _log_hparams_with_final_scores(self, split: str) -> None:
        """Fill TensorBoard's HPARAMS tab: the run's hyperparameters next to its final `hp/<split>_acc` and
        `hp/<split>_f1`, logged at the step of the weights they score (the tested checkpoint's, for test)."""
        if self.trainer.is_global_zero:
            found = self.trainer.callback_metrics
            scores = {f"hp/{split}_{s}": float(found.get(f"{split}/{s}", float("nan"))) for s in FINAL_SCORES}
            Reports(self.loggers, self._weights_step()).final_scores(hyperparameters(self.trainer), scores)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The report only where it is of these weights (not of an older validation: a checkpoint every N
        # steps, say).
        report = self.calibration if (self.calibration or {}).get("step") == self.global_step else None
        checkpoint["calibration"] = {"temperature": self.temperature, "report": report}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._loaded_step = checkpoint.get("global_step")
        self._fit_data = dict(checkpoint.get("datamodule_hyper_parameters", {}))
        # Checkpoints from before calibration have none: their probabilities stay as the model gives them.
        self.temperature = checkpoint.get("calibration", {}).get("temperature", 1.0)

    def _weights_step(self) -> int:
        """The training step of the weights being evaluated: while fitting, the current one; evaluating a
        checkpoint, its own (Lightning restores no training progress then, so global_step reads 0)."""
        if self.trainer.state.fn == "fit" or self._loaded_step is None:
            return self.global_step
        return self._loaded_step

    def _start_epoch(self, split: str) -> None:
        # Reset here, not at the end of the last epoch: a reset under `validate`'s inference mode would leave
        # inference tensors that the next update, under `fit`'s no_grad validation, may not modify.
        for metrics in (self.scores, self.losses, self.margins, self.labels):
            metrics[split].reset()
        for metric in self.by_length[split].values():
            metric.reset()
        self.wrong[split].reset()

    def on_validation_epoch_start(self) -> None:
        self._start_epoch("val")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._end_evaluation("val")

    def setup(self, stage: str) -> None:
        if stage != "predict":
            say_what_is_left_out(self.loggers)
            # Where the evaluations' most confidently wrong reviews are gathered, with a time limit.
            self._gather_group = TimedGroup(self.trainer) if self.trainer.world_size > 1 else None

    def on_train_start(self) -> None:
        self._trained = True

    def on_fit_end(self) -> None:
        self._log_hparams_with_final_scores("val")

    def on_test_epoch_start(self) -> None:
        self._start_epoch("test")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._end_evaluation("test")

    def on_test_end(self) -> None:
        # The HPARAMS tab's row (and the model card) quote the test of the fit's own test reviews only.
        if self._records_name("test") == "test":
            self._log_hparams_with_final_scores("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        # Calibrated: the temperature the checkpoint's validation fitted (bert_imdb/reporting/calibration.py).
        probabilities = (self(batch).float() / self.temperature).softmax(-1)
        confidence, label = probabilities.max(-1)
        return {
            "index": batch["index"],
            "id": batch["id"],
            "label": [LABEL_NAMES[i] for i in label.tolist()],
            "probability": confidence.tolist(),
            "pos_probability": probabilities[:, LABEL_NAMES.index("pos")].tolist(),
        }

    def configure_optimizers(self):
        return adamw_with_linear_warmup(self)

    def apply_optimizer_settings(self, **changed) -> None:
        """A resume's learning rate or weight decay changed on purpose (resume/exact_resume.py)."""
        apply_optimizer_settings(self, **changed)
