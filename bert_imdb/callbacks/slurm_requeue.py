"""SLURM's warning before the time limit: checkpoint between two steps, on every process at the same step,
then requeue the job, which resumes from that checkpoint exactly."""

import os
import re
import signal
import subprocess
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from bert_imdb.workarounds.validation_follows import validation_follows

# The signal the sbatch templates ask for (--signal=SIGUSR1@90), and Lightning's default requeue signal.
REQUEUE_SIGNAL = signal.SIGUSR1


def hpc_checkpoint_path(folder: str | Path) -> Path:
    """The next `hpc_ckpt_<N>.ckpt` in `folder`: Lightning resumes a job under SLURM from the highest N."""
    numbers = [
        int(m.group(1)) for p in Path(folder).glob("hpc_ckpt_*.ckpt") if (m := re.search(r"_(\d+)\.", p.name))
    ]
    return Path(folder) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


class SlurmRequeue(Checkpoint):
    """Under SLURM, the requeue signal is answered at the end of the next training step: a checkpoint
    (`hpc_ckpt_<N>.ckpt` in `trainer.default_root_dir`) and `scontrol requeue`.

    Written because Lightning 2.6's own handler saves inside the signal handler, wherever the process is at
    that moment: in the middle of a step (the checkpoint then holds a batch fetched but not trained, and the
    resumed run differs from one never stopped), and, with several processes, while the others are in a
    gradient all-reduce, where its barrier can meet the wrong collective. Here the handler only notes the
    signal. The processes agree on the step through a small all-reduce of the flag on a gloo group, started
    at one step's end and read at the next: it never waits for the accelerator or blocks the step. Where a
    validation follows that step, the checkpoint is saved once it has run (workarounds/validation_follows.py
    says why).

    A `Checkpoint` (Lightning's base class for callbacks that save checkpoints), so that Lightning runs its
    hooks after those of EarlyStopping and ModelCheckpoint, as it runs ModelCheckpoint's: saved before them
    at a validation's end, the checkpoint missed the best checkpoint's update from that validation, which a
    resume does not replay (the named resume case "SLURM's checkpoint where a validation follows").
    """

    def __init__(self):
        self._signalled = False
        self._saved = self._at_epoch_end = self._after_validation = self._requested = False
        self._group = None
        self._pending = None
        self._flag = torch.zeros(1)

    def on_train_start(self, trainer, pl_module) -> None:
        # Only where Lightning set up SLURM's requeue (a batch job, not an interactive srun): its handler
        # is then installed, and is replaced here.
        if not SLURMEnvironment.detect() or signal.getsignal(REQUEUE_SIGNAL) in (signal.SIG_DFL, None):
            return
        signal.signal(REQUEUE_SIGNAL, self._note)
        if trainer.world_size > 1:
            self._group = torch.distributed.new_group(backend="gloo")

    def _note(self, signum, frame) -> None:
        self._signalled = True

    def _agreed(self) -> bool:
        """Whether any process had the signal by the end of the previous step (the same answer on all)."""
        if self._group is None:
            return self._signalled
        agreed = False
        if self._pending is not None:
            self._pending.wait()
            agreed = bool(self._flag.item())  # a CPU tensor: no device to wait for
        self._flag = torch.tensor([float(self._signalled)])
        self._pending = torch.distributed.all_reduce(
            self._flag, op=torch.distributed.ReduceOp.MAX, group=self._group, async_op=True
        )
        return agreed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not SLURMEnvironment.detect() or self._saved:
            return
        self._requested = self._agreed() or self._requested
        # Accumulated gradients are not in checkpoints: a save inside an accumulation window would lose its
        # first micro-batches. Lightning steps the optimizer after every accumulate_grad_batches-th batch
        # of an epoch, and after its last.
        step_taken = (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or trainer.is_last_batch
        if not (self._requested and step_taken):
            return
        self._saved = True
        if trainer.is_last_batch:
            # After an epoch's last batch, save once the epoch has ended (LastCheckpoint says why).
            self._at_epoch_end = True
        elif validation_follows(trainer):
            # Save once it has run: a checkpoint saved before it resumes without it.
            self._after_validation = True
        else:
            self._save_and_requeue(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._after_validation:
            self._after_validation = False
            self._save_and_requeue(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._at_epoch_end:
            self._at_epoch_end = False
            self._save_and_requeue(trainer)

    def _save_and_requeue(self, trainer) -> None:
        path = hpc_checkpoint_path(trainer.default_root_dir)
        trainer.save_checkpoint(path)  # every process: each adds its random states
        rank_zero_info(f"SLURM's requeue signal: saved {path} at step {trainer.global_step}; stopping")
        # The job ends here, cleanly: SLURM answers the requeue with SIGTERM, on which Lightning's handler
        # would talk to the other processes from inside the handler (a collective at a random point, which
        # gloo reports as a mismatch) while they stop too.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        trainer.should_stop = True
        if trainer.is_global_zero:
            job = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ["SLURM_JOB_ID"]
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if done.returncode != 0:
                rank_zero_warn(f"scontrol requeue {job} failed: {done.stderr.strip()}")
