"""Reading a checkpoint without running code from it: `weights_only` loading, and one-line errors for files
that are missing, truncated, damaged, not checkpoints, hold pickled objects or non-finite weights."""

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
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise UserError(
            f"{ckpt_path} is not a bert_imdb checkpoint (no state_dict/hyper_parameters): pass one written by fit"
        )
    broken = next((name for name, tensor in checkpoint["state_dict"].items() if not _finite(tensor)), None)
    if broken is not None:
        raise UserError(
            f"checkpoint {ckpt_path} holds non-finite weights ({broken} has NaN or infinity): training "
            "diverged there; use an earlier checkpoint, or train with a lower model.learning_rate"
        )
    return checkpoint


def _finite(value) -> bool:
    return not (torch.is_tensor(value) and value.is_floating_point()) or bool(torch.isfinite(value).all())
