"""Reading a checkpoint without running code from it: `weights_only` loading, and one-line errors for files
that are missing, truncated, damaged, not checkpoints, hold pickled objects or non-finite weights."""

import importlib
import pickle
import re
import zipfile
import zlib
from pathlib import Path

import torch

from bert_imdb.errors import UserError

UNREADABLE = "cannot be read (truncated, or not a checkpoint): pass a complete .ckpt written by fit"


def check_checkpoint_file(ckpt_path: str) -> None:
    """Fail early on a checkpoint path that is missing, truncated or not a checkpoint at all.

    torch.save writes a zip archive whose index sits at its end, so a cut-off file is no zip: a cheap test.
    """
    path = Path(ckpt_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        raise UserError(
            f"{ckpt_path} is a transformers model folder, not a checkpoint: start a fit from it with "
            "--model.model_name_or_path, and pass a .ckpt written by fit as --ckpt_path"
        )
    if path.is_dir():
        raise UserError(f"{ckpt_path} is a folder: pass a .ckpt file from lightning_logs/.../checkpoints")
    if not path.is_file():
        raise UserError(
            f"checkpoint {ckpt_path} does not exist: pass a .ckpt from lightning_logs/.../checkpoints"
        )
    if not zipfile.is_zipfile(path):
        raise UserError(f"checkpoint {ckpt_path} {UNREADABLE}")
    # Bytes overwritten inside it leave the index whole and load as other numbers (all-NaN predictions and
    # a test accuracy of 0.5, exit 0): the archive's checksums tell.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
        raise UserError(f"checkpoint {ckpt_path} {UNREADABLE}") from err
    if damaged is not None:
        raise UserError(
            f"checkpoint {ckpt_path} is damaged ({damaged} does not match its checksum): use another copy, "
            "or an earlier checkpoint"
        )


def load_checkpoint(ckpt_path: str, mmap: bool = False) -> dict:
    """A Lightning checkpoint's contents, loaded with `weights_only` (no arbitrary code runs), its checksums
    and weights checked; with `mmap`, tensors are mapped from the file rather than copied into memory (the
    checks still read it once), for the CLI's look before a command runs."""
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
    _check_written_by_bert_imdb(ckpt_path, checkpoint)
    broken = next((name for name, tensor in checkpoint["state_dict"].items() if not _finite(tensor)), None)
    if broken is not None:
        raise UserError(
            f"checkpoint {ckpt_path} holds non-finite weights ({broken} has NaN or infinity): training "
            "diverged there; use an earlier checkpoint, or train with a lower model.learning_rate"
        )
    return checkpoint


def _check_written_by_bert_imdb(ckpt_path: str, checkpoint) -> None:
    """A checkpoint of this project records the module it trained (`_class_path`, a bert_imdb class) beside
    its weights and hyperparameters: anything else is said for what it is."""
    if isinstance(checkpoint, dict) and checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
        raise UserError(
            f"{ckpt_path} is a plain state_dict (weights alone, no settings or training state), not a "
            "checkpoint: pass a .ckpt written by bert_imdb fit, or save the weights as a transformers model "
            "folder and start from it with --model.model_name_or_path"
        )
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise UserError(
            f"{ckpt_path} is not a bert_imdb checkpoint (no state_dict/hyper_parameters): pass one written by fit"
        )
    class_path = str(checkpoint["hyper_parameters"].get("_class_path", ""))
    if not _is_bert_imdb_module(class_path):
        names = ", ".join(sorted(map(str, checkpoint["hyper_parameters"]))[:5]) or "no hyperparameters"
        raise UserError(
            f"{ckpt_path} is a Lightning checkpoint of another project ({class_path or 'its module'} takes "
            f"{names}), not one bert_imdb wrote: pass a .ckpt written by bert_imdb fit"
        )


def _is_bert_imdb_module(class_path: str) -> bool:
    """Whether `class_path` names one of bert_imdb's modules, or a subclass of one (a user's own)."""
    if class_path.startswith("bert_imdb."):
        return True
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and any(c.__module__.startswith("bert_imdb.") for c in cls.__mro__)


def _finite(value) -> bool:
    return not (torch.is_tensor(value) and value.is_floating_point()) or bool(torch.isfinite(value).all())
