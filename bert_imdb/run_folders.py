"""The run folder a command logs into (<save_dir>/<name>/version_N of the TensorBoard logger), claimed
exclusively for a new run. A command that continues a run logs into that run's folder instead
(resume/finding.py)."""

import contextlib
import os
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from bert_imdb.errors import UserError
from bert_imdb.tasks import import_class

# The folders this process claimed or made to hold its run, outermost first, checked once its command
# ends (innermost first): removed if still empty.
_claimed: list[Path] = []


def tensorboard_args(logger, fixed_version: bool = False):
    """The init_args of a TensorBoardLogger the config asks for without a fixed version (or with one, where
    `fixed_version`), else None: only then may a command choose the run folder it logs into."""
    if not (isinstance(logger, dict) or hasattr(logger, "class_path")):
        return None
    if import_class(logger.class_path) is not TensorBoardLogger or (
        logger.init_args.get("version") is not None and not fixed_version
    ):
        return None
    return logger.init_args


def claim_run_folder(logger) -> None:
    """Give a command that starts a new run a version folder of its own, made with an exclusive mkdir.
    TensorBoardLogger picks the next free number by listing the folder and makes it only when it first
    writes, so two commands started together both took version_0 and wrote over each other's checkpoints.
    Only the first process claims: the other processes of a DDP run (Lightning starts them again through
    this CLI, or SLURM starts one per task) would claim folders nobody uses; they log nothing, and the
    Trainer takes rank 0's folder for checkpoints and log_dir."""
    args = tensorboard_args(logger)
    if args is None or rank_zero_only.rank != 0 or int(os.environ.get("NODE_RANK", 0)) != 0:
        return
    runs = Path(args.save_dir) / args.name
    # The folders this makes (lightning_logs/, its name/), so that a failed command removes them too.
    made = [folder for folder in (runs, *runs.parents) if not folder.exists()]
    try:
        runs.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name[8:]) for p in runs.glob("version_*") if p.name[8:].isdigit()]
        version = max(taken, default=-1) + 1
        while True:
            try:
                (runs / f"version_{version}").mkdir()
                break
            except FileExistsError:  # another command took it since the listing: the next one
                version += 1
    except OSError as err:
        raise UserError(
            f"cannot create a run folder under {runs} ({err.strerror}): point "
            "trainer.logger.init_args.save_dir at a writable folder"
        ) from None
    args.version = version
    _claimed.extend([*made[::-1], runs / f"version_{version}"])


def release_unused_run_folder() -> None:
    """After a command: remove the folder it claimed, and the ones it made to hold it, where nothing was
    written into them (it failed first)."""
    while _claimed:
        # Written into (events, a checkpoint, a config), or holding other runs: it stays.
        with contextlib.suppress(OSError):
            _claimed.pop().rmdir()
