"""The checkpoint a command continues or scores, and the run folder it then logs into: the newest run's
last.ckpt for `fit --ckpt_path last`, a requeued SLURM job's own requeue checkpoint, the best checkpoint a
run recorded for `--ckpt_path best`, and the checkpoint's own run for a command given one."""

from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from bert_imdb.errors import UserError
from bert_imdb.resume.loading import load_checkpoint
from bert_imdb.resume.slurm_requeue import SlurmRequeue, slurm_job
from bert_imdb.run_folders import tensorboard_args


def continue_last_run(config) -> Path | None:
    """Point the TensorBoard logger at the newest run with a last.ckpt, so `--ckpt_path last` finds it there
    and the resumed run keeps logging into the same folder instead of starting a new version; that
    last.ckpt. With none, say so and fit a new run (Lightning would start one too, with a hint to set
    save_last that does not apply here)."""
    args = tensorboard_args(config.trainer.logger)
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


def continue_requeued_job(config) -> str | None:
    """Under SLURM, a fit without --ckpt_path (or with `hpc`): the requeue checkpoint this job left in one of
    its runs (SlurmRequeue), which the fit then resumes as if given it, with the same checks and in the same
    run folder. Another job's requeue checkpoint there is not resumed: this job starts a run of its own and
    says how to continue that one."""
    args, job = tensorboard_args(config.trainer.logger, fixed_version=True), slurm_job()
    if args is None or job is None:
        return None
    # The sbatch templates fix the version (one run folder per job); otherwise any of the runs.
    version = "*" if args.get("version") is None else args.version
    found = (Path(args.save_dir) / args.name).glob(f"{version}/checkpoints/hpc_ckpt_*.ckpt")
    newest_other = None
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        written_by = SlurmRequeue.job_of(load_checkpoint(str(path), mmap=True))
        if written_by == job:
            return str(path)
        newest_other = newest_other or (path, written_by)
    if newest_other:
        path, other = newest_other
        rank_zero_warn(
            f"{path} is SLURM job {other}'s requeue checkpoint, and this is job {job}: this fit starts a new "
            f"run; pass --ckpt_path {path} to continue that one instead"
        )
    return None


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
    args = tensorboard_args(config.trainer.logger)
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
    args = tensorboard_args(logger)
    run = ckpt_path.expanduser().resolve().parent.parent
    if args is None or ckpt_path.parent.name != "checkpoints" or not (run / "hparams.yaml").is_file():
        return
    args.save_dir, args.name, args.version = str(run.parent.parent), run.parent.name, run.name
