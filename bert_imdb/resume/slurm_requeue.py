"""SLURM's warning before the time limit: checkpoint between two steps, on every process at the same step,
then requeue the job, which resumes from that checkpoint exactly."""

import os
import re
import signal
import subprocess
from pathlib import Path

from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from bert_imdb.errors import UserError
from bert_imdb.resume.last_checkpoint import LastCheckpoint
from bert_imdb.resume.safe_stop import SafeStop

# The signal the sbatch templates ask for (--signal=SIGUSR1@90), and Lightning's default requeue signal.
REQUEUE_SIGNAL = signal.SIGUSR1


def hpc_checkpoint_path(folder: str | Path) -> Path:
    """The next `hpc_ckpt_<N>.ckpt` in `folder`: Lightning resumes a job under SLURM from the highest N."""
    numbers = [
        int(m.group(1)) for p in Path(folder).glob("hpc_ckpt_*.ckpt") if (m := re.search(r"_(\d+)\.", p.name))
    ]
    return Path(folder) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


def slurm_job() -> str | None:
    """This process's SLURM job (`<array job>_<task>` in an array), which `scontrol requeue` keeps; None
    outside SLURM."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job:
        return f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


class SlurmRequeue(SafeStop):
    """Under SLURM, the requeue signal is answered at the next point where a checkpoint resumes exactly
    (SafeStop's rule): a checkpoint (`hpc_ckpt_<N>.ckpt` in the run's own checkpoints folder, beside
    last.ckpt, recording this job) and `scontrol requeue`. The requeued job finds it there by its job id
    (resume/finding.py) and resumes through the same checks as any `--ckpt_path`; another
    job started in the same folder starts a run of its own.

    Written because Lightning 2.6's own handler saves inside the signal handler, wherever the process is at
    that moment: in the middle of a step (the checkpoint then holds a batch fetched but not trained, and the
    resumed run differs from one never stopped), and, with several processes, while the others are in a
    gradient all-reduce, where its barrier can meet the wrong collective.
    """

    def __init__(self):
        super().__init__()
        # The CLI's: whether this fit was given no --ckpt_path, so that a checkpoint it resumes from is one
        # Lightning found by itself (an hpc_ckpt_<N>.ckpt in default_root_dir, where versions before the
        # run folder's wrote them).
        self.found_by_lightning = False

    def state_dict(self) -> dict:
        # The job that wrote the checkpoint: its requeue continues it, another job in the same folder not.
        return {"job": slurm_job()}

    @classmethod
    def job_of(cls, checkpoint: dict) -> str | None:
        """The SLURM job that wrote `checkpoint` (state_dict's record), or None (no SLURM, or older)."""
        return (checkpoint.get("callbacks", {}).get(cls.__qualname__) or {}).get("job")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        path = Path(str(trainer.ckpt_path or ""))
        if trainer.state.fn != "fit" or not self.found_by_lightning or not path.name.startswith("hpc_ckpt_"):
            return
        written_by, this = self.job_of(checkpoint), slurm_job()
        if written_by and this and written_by != this:
            raise UserError(
                f"{path} is SLURM job {written_by}'s requeue checkpoint, and this is job {this}, started in the "
                "same folder: Lightning would resume that job's run here. Move the file away (or start this "
                f"job in another folder), or pass --ckpt_path {path} to continue it on purpose"
            )

    def signals(self, trainer) -> tuple[signal.Signals, ...]:
        # Only where Lightning set up SLURM's requeue (a batch job, not an interactive srun): its handler
        # is then installed, and is replaced here.
        if not SLURMEnvironment.detect() or signal.getsignal(REQUEUE_SIGNAL) in (signal.SIG_DFL, None):
            return ()
        return (REQUEUE_SIGNAL,)

    def stop(self, trainer, signum: int) -> None:
        self._save_and_requeue(trainer)

    def _save_and_requeue(self, trainer) -> None:
        # Beside last.ckpt: the run's checkpoints folder (each ModelCheckpoint resolves its dirpath on every
        # process in its setup); without checkpointing, default_root_dir, where Lightning's auto-resume looks.
        last = next((c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)), None)
        folder = (
            getattr(last, "dirpath", None)
            or getattr(trainer.checkpoint_callback, "dirpath", None)
            or trainer.default_root_dir
        )
        path = hpc_checkpoint_path(folder)
        trainer.save_checkpoint(path)  # every process: each adds its random states
        rank_zero_info(f"SLURM's requeue signal: saved {path} at step {trainer.global_step}; stopping")
        # The job ends here, cleanly: SLURM answers the requeue with SIGTERM, on which Lightning's handler
        # would talk to the other processes from inside the handler (a collective at a random point, which
        # gloo reports as a mismatch) while they stop too.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        trainer.should_stop = True
        if trainer.is_global_zero:
            job = slurm_job()
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if done.returncode != 0:
                rank_zero_warn(f"scontrol requeue {job} failed: {done.stderr.strip()}")
