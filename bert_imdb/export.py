"""`python -m bert_imdb export`: a classifier or MLM checkpoint to a Hugging Face model folder."""

import pickle
import re
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from bert_imdb.classifier import SentimentClassifier
from bert_imdb.data import IMDbDataModule
from bert_imdb.errors import UserError
from bert_imdb.model_card import model_card
from bert_imdb.pretrained import load_tokenizer
from bert_imdb.pretraining import MaskedLanguageModel
from bert_imdb.pretraining_data import IMDbPretrainingDataModule

UNREADABLE = "cannot be read (truncated, or not a checkpoint): pass a complete .ckpt written by fit"


def check_checkpoint_file(ckpt_path: str) -> None:
    """Fail early on a checkpoint path that is missing, truncated or not a checkpoint at all.

    torch.save writes a zip archive whose index sits at its end, so a cut-off file is no zip: a cheap test.
    """
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise UserError(
            f"checkpoint {ckpt_path} does not exist: pass a .ckpt from lightning_logs/.../checkpoints"
        )
    if not zipfile.is_zipfile(path):
        raise UserError(f"checkpoint {ckpt_path} {UNREADABLE}")


def load_checkpoint(ckpt_path: str, mmap: bool = False) -> dict:
    """A Lightning checkpoint's contents, loaded with `weights_only` (no arbitrary code runs); with `mmap`,
    tensors are mapped from the file rather than read, for a cheap look at the hyperparameters."""
    check_checkpoint_file(ckpt_path)
    try:
        checkpoint = torch.load(
            Path(ckpt_path).expanduser(), map_location="cpu", weights_only=True, mmap=mmap
        )
    except pickle.UnpicklingError as err:
        # weights_only refused an object it would have had to import (a function, a class): loading it
        # would run code. torch's message then advises weights_only=False, which is exactly what not to do.
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused is None:
            raise UserError(f"checkpoint {ckpt_path} {UNREADABLE}") from err
        raise UserError(
            f"checkpoint {ckpt_path} holds a pickled {refused.group(1)}, which bert_imdb never loads (loading "
            "it could run code): use a checkpoint written by fit"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise UserError(f"checkpoint {ckpt_path} {UNREADABLE}") from err
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise UserError(
            f"{ckpt_path} is not a bert_imdb checkpoint (no state_dict/hyper_parameters): pass one written by fit"
        )
    return checkpoint


# The modules export knows, by the class name LightningCLI records in the checkpoint (`_class_path`).
EXPORTABLE = {cls.__name__: cls for cls in (SentimentClassifier, MaskedLanguageModel)}
# Lightning keeps a data module's `state_dict` in checkpoints under its class's qualified name.
DATA_MODULES = {cls.__qualname__ for cls in (IMDbDataModule, IMDbPretrainingDataModule)}


@rank_zero_only
def export(*, ckpt_path: str, output_dir: str, overwrite: bool = False) -> None:
    """Write a checkpoint as a Hugging Face model folder: safetensors weights, config and tokenizer.

    A classifier checkpoint becomes a sequence-classification model with id2label {0: neg, 1: pos}, for
    `pipeline("text-classification", model=output_dir)`; an MLM checkpoint becomes a masked-LM model, for
    `AutoModelForMaskedLM` and for fine-tuning with `--model.model_name_or_path output_dir`. The tokenizer's
    model_max_length is the run's data.max_length, so that pipelines truncate as the run did.

    Args:
        ckpt_path: A checkpoint written by `python -m bert_imdb fit`.
        output_dir: The folder to write; it must be new or empty unless overwrite is set.
        overwrite: Write into a folder that already has files, replacing the model files in it.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{output_dir} is a file: pass a folder (new or empty) as --output_dir")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"{output_dir} exists and is not empty: pass another --output_dir, or --overwrite true"
        )
    checkpoint = load_checkpoint(ckpt_path)
    saved = checkpoint["hyper_parameters"]
    # Checkpoints of SentimentClassifier from before MLM existed carry no class path.
    name = saved.get("_class_path", "SentimentClassifier").rpartition(".")[2]
    if name not in EXPORTABLE:
        raise UserError(f"{ckpt_path} holds a {name}: export knows {' and '.join(EXPORTABLE)} checkpoints")
    hparams = {k: v for k, v in saved.items() if not k.startswith("_")}
    module = EXPORTABLE[name](**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    tokenizer = load_tokenizer(hparams["model_name_or_path"])
    max_length = checkpoint.get("datamodule_hyper_parameters", {}).get("max_length")
    if max_length is not None:
        tokenizer.model_max_length = max_length
    module.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # What the data module recorded of its sizes (absent from checkpoints written before it did).
    sizes = next((v for k, v in checkpoint.items() if k in DATA_MODULES and isinstance(v, dict)), {})
    (out / "README.md").write_text(model_card(name, checkpoint, ckpt_path, sizes), encoding="utf-8")
    rank_zero_info(f"Exported {name} checkpoint {ckpt_path} to {out}")
