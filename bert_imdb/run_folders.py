"""The run folder a command logs into (<save_dir>/<name>/version_N of the TensorBoard logger): claimed
exclusively for a new run, the newest run's for `fit --ckpt_path last`, the checkpoint's run for a command
given a checkpoint from one, and the best checkpoint a run recorded for `--ckpt_path best`."""

import contextlib
import os
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from bert_imdb.checkpoints.loading import load_checkpoint
from bert_imdb.errors import UserError
from bert_imdb.tasks import import_class

# The folders this process claimed or made to hold its run, outermost first, checked once its command
# ends (innermost first): removed if still empty.
_claimed: list[Path] = []


def _tensorboard_args(logger):
    """The init_args of a TensorBoardLogger the config asks for without a fixed version, else None: only
    then may a command choose the run folder it logs into."""
    if not (isinstance(logger, dict) or hasattr(logger, "class_path")):
        return None
    if (
        import_class(logger.class_path) is not TensorBoardLogger
        or logger.init_args.get("version") is not None
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
    args = _tensorboard_args(logger)
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


def continue_last_run(config) -> Path | None:
    """Point the TensorBoard logger at the newest run with a last.ckpt, so `--ckpt_path last` finds it there
    and the resumed run keeps logging into the same folder instead of starting a new version; that
    last.ckpt. With none, say so and fit a new run (Lightning would start one too, with a hint to set
    save_last that does not apply here)."""
    args = _tensorboard_args(config.trainer.logger)
    if args is None:
        return None
    runs = Path(args.save_dir) / args.name
    last = last_checkpoints(runs)
    if not last:
        rank_zero_warn(f"--ckpt_path last: no run under {runs} has a last.ckpt, so this fit starts a new run")
        config.ckpt_path = None
        return None
    args.version = last[-1].parent.parent.name
    return last[-1]


def last_checkpoints(runs: Path) -> list[Path]:
    """The last.ckpt of every run under `runs` (<save_dir>/<name>), oldest first."""
    return sorted(runs.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)


def newest_best_checkpoint(runs: Path) -> str | None:
    """The best checkpoint of the newest run under `runs` whose last.ckpt records one that exists."""
    for path in reversed(last_checkpoints(runs)):
        for key, state in load_checkpoint(str(path), mmap=True).get("callbacks", {}).items():
            best = state.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best and Path(best).is_file():
                return best
    return None


def find_best_checkpoint(config, subcommand: str) -> None:
    """`--ckpt_path best` of validate, test or predict, in a process of its own (Lightning knows "best" only
    in the process that fitted): the best checkpoint of the newest run with a last.ckpt, as its
    ModelCheckpoint recorded it there. "hpc" names SLURM's requeue checkpoint, which only a fit resumes."""
    if config.ckpt_path == "hpc":
        raise UserError(
            f"--ckpt_path hpc resumes a fit on SLURM: {subcommand} a .ckpt file, or --ckpt_path best"
        )
    args = _tensorboard_args(config.trainer.logger)
    runs = Path(args.save_dir) / args.name if args is not None else None
    best = newest_best_checkpoint(runs) if runs else None
    if best:
        load_checkpoint(best, mmap=True)  # the checks every checkpoint a command is given gets
        config.ckpt_path = best
        return
    where = f"no run under {runs}" if runs else "with a fixed logger version, no run"
    raise UserError(f"--ckpt_path best: {where} records a best checkpoint that exists: pass the .ckpt file")


def log_into_checkpoint_run(logger, ckpt_path: Path) -> None:
    """A checkpoint from a run folder (<save_dir>/<name>/<version>/checkpoints/) is evaluated, predicted
    or resumed in that run: TensorBoard then shows test/* beside the fit's train/* and val/*, and one
    HPARAMS row with both accuracies. Not when the logger's version is set, or is not TensorBoard."""
    args = _tensorboard_args(logger)
    run = ckpt_path.expanduser().resolve().parent.parent
    if args is None or ckpt_path.parent.name != "checkpoints" or not (run / "hparams.yaml").is_file():
        return
    args.save_dir, args.name, args.version = str(run.parent.parent), run.parent.name, run.name
