"""`python -m bert_imdb export`: a classifier or MLM checkpoint to a Hugging Face model folder."""

import os
import shutil
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from bert_imdb.deployment.onnx_export import graph_inputs, onnx_card_section, onnx_modules, write_onnx
from bert_imdb.errors import UserError
from bert_imdb.models.classifier import CALIBRATION_FIELD, SentimentClassifier
from bert_imdb.models.pretrained import load_tokenizer
from bert_imdb.reporting.calibration import save_reliability_figure
from bert_imdb.reporting.model_card import model_card
from bert_imdb.resume.loading import load_checkpoint
from bert_imdb.sources import looks_like_path
from bert_imdb.tasks import data_module_state, module_of_checkpoint


def fold_temperature(model, temperature: float) -> None:
    """Divide the logits layer's weights and bias by the temperature, so the exported model's logits are the
    calibrated ones and a `pipeline` gives calibrated scores with nothing to apply; the config records it
    (`calibration_temperature`). The logits layer is the head's last linear layer with one output per label,
    whatever the architecture calls it (BERT's `classifier`, RoBERTa's and ELECTRA's `classifier.out_proj`)."""
    labels = model.config.num_labels
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == labels]
    if not layers:
        raise UserError(
            f"cannot fold the temperature into a {type(model).__name__}: it has no linear layer of "
            f"{labels} outputs"
        )
    head = layers[-1]
    with torch.no_grad():
        head.weight /= temperature
        if head.bias is not None:
            head.bias /= temperature
    setattr(model.config, CALIBRATION_FIELD, temperature)


@rank_zero_only
def export(
    *,
    ckpt_path: str,
    output_dir: str,
    overwrite: bool = False,
    model_name_or_path: str | None = None,
    format: Literal["transformers", "onnx"] = "transformers",
    quantize: Literal["none", "int8"] = "none",
) -> None:
    """Write a checkpoint as a Hugging Face model folder: safetensors weights, config and tokenizer; with
    `--format onnx`, also `model.onnx` for ONNX Runtime (docs/export.md).

    A classifier checkpoint becomes a sequence-classification model with id2label {0: neg, 1: pos}, for
    `pipeline("text-classification", model=output_dir)`; an MLM checkpoint becomes a masked-LM model, for
    `AutoModelForMaskedLM` and for fine-tuning with `--model.model_name_or_path output_dir`. The tokenizer's
    model_max_length is the run's data.max_length, so that pipelines truncate as the run did.

    Args:
        ckpt_path: A checkpoint written by `python -m bert_imdb fit`.
        output_dir: The folder to write; it must be new or empty unless overwrite is set.
        overwrite: Write into a folder that already has files, replacing the model files in it.
        model_name_or_path: The model the run started from (folder or Hub id), where the checkpoint's does
            not resolve from here: a relative path, exported from another folder. Its weights are replaced
            by the checkpoint's; its config and tokenizer are used.
        format: `onnx` adds model.onnx (a classifier only): inputs named as the model's forward takes them,
            dynamic batch and sequence axes, calibrated logits.
        quantize: `int8` adds model.int8.onnx, ONNX Runtime's dynamic int8 quantization (with format onnx).
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{output_dir} is a file: pass a folder (new or empty) as --output_dir")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"{output_dir} exists and is not empty: pass another --output_dir, or --overwrite true"
        )
    if quantize != "none" and format != "onnx":
        raise UserError("--quantize int8 quantizes the ONNX model: add --format onnx")
    if format == "onnx":
        onnx_modules()  # before any work: the extra may be missing
    checkpoint = load_checkpoint(ckpt_path)
    module_class = module_of_checkpoint(checkpoint, ckpt_path)
    if format == "onnx" and not issubclass(module_class, SentimentClassifier):
        raise UserError(
            f"--format onnx exports a classifier for deployment; {ckpt_path} holds a {module_class.__name__}: "
            "export it without --format, fine-tune from the export, and export that"
        )
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    if model_name_or_path is not None:
        hparams["model_name_or_path"] = model_name_or_path
    elif (
        looks_like_path(hparams["model_name_or_path"])
        and not Path(hparams["model_name_or_path"]).expanduser().exists()
    ):
        raise UserError(
            f"the checkpoint's model {hparams['model_name_or_path']} does not exist from {Path.cwd()}: run "
            "export from the folder the run was started in, or pass --model_name_or_path <its model folder or Hub id>"
        )
    module = module_class(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    tokenizer = load_tokenizer(hparams["model_name_or_path"])
    max_length = checkpoint.get("datamodule_hyper_parameters", {}).get("max_length")
    if max_length is not None:
        tokenizer.model_max_length = max_length
    calibration = checkpoint.get("calibration") or {}
    if isinstance(module, SentimentClassifier):
        fold_temperature(module.model, calibration.get("temperature", 1.0))
    card = model_card(module_class, checkpoint, ckpt_path, data_module_state(checkpoint))
    report = calibration.get("report")
    # Written beside the output folder first, and moved in only once complete: an export that fails or is
    # killed halfway leaves no folder that looks like a model (nor half of one over an older export).
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        module.model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(card, encoding="utf-8")
        if format == "onnx":
            written = write_onnx(module.model, tokenizer, staging, int8=quantize == "int8")
            with (staging / "README.md").open("a", encoding="utf-8") as readme:
                readme.write(
                    onnx_card_section([file.name for file in written], graph_inputs(module.model, tokenizer))
                )
        if report is not None:
            save_reliability_figure(report, staging / "reliability.png")
        if not out.exists():
            staging.rename(out)
        else:
            for file in staging.iterdir():
                os.replace(file, out / file.name)
    except OSError as err:
        raise UserError(
            f"cannot write the export to {output_dir} ({err.strerror or err}): free space there, or pass "
            "--output_dir on a writable disk"
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rank_zero_info(f"Exported {module_class.__name__} checkpoint {ckpt_path} to {out}")
