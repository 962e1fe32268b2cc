"""StopOnSignal: SIGTERM, SIGINT (and SIGUSR1 outside SLURM) stop a fit with a checkpoint to continue from,
and the command exits with 128 + the signal's number, as shells expect of a process a signal stopped."""

import os
import signal
from pathlib import Path

from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

from bert_imdb.resume.last_checkpoint import LastCheckpoint
from bert_imdb.resume.safe_stop import SafeStop
from bert_imdb.workarounds.checkpoint_at_epoch_end import save_at_epoch_end


class StopOnSignal(SafeStop):
    """The first signal stops the fit at the next point where a checkpoint resumes exactly (SafeStop's
    rule), saving `last.ckpt` there (what `--ckpt_path last` continues from); the CLI then exits non-zero,
    saying where the checkpoint is. A second signal stops at once: checkpoints are written to a temporary
    name and renamed (resume/atomic_io.py), so none is left half-written.

    Lightning 2.6 answers SIGTERM by leaving its loops with a SystemExit of status 0 and no checkpoint, and
    SIGINT by exiting with status 1 and no checkpoint.
    """

    def __init__(self):
        super().__init__()
        # Once stopped: (signal, step, the checkpoint saved or None), which the CLI reports.
        self.stopped: tuple[int, int, Path | None] | None = None

    def signals(self, trainer) -> tuple[signal.Signals, ...]:
        # Under SLURM, SIGUSR1 is the requeue warning (SlurmRequeue's); SLURM answers its requeue with
        # SIGTERM, which SlurmRequeue then ignores.
        slurm = SLURMEnvironment.detect()
        return (signal.SIGTERM, signal.SIGINT) if slurm else (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def _note(self, signum, frame) -> None:
        if self._signalled:  # the second: stop now, as the signal would have without a handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        super()._note(signum, frame)

    def stop(self, trainer, signum: int) -> None:
        last = next((c for c in trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)), None)
        path = None
        if last is not None and last.save_top_k != 0:
            # Through LastCheckpoint's own save (every process: each adds its random states), so that it
            # knows this step is saved.
            save_at_epoch_end(last, trainer)
            path = Path(last.best_model_path) if last.best_model_path else None  # no monitor: the newest
        trainer.should_stop = True
        self.stopped = (signum, trainer.global_step, path)
        rank_zero_info(f"{signal.Signals(signum).name}: stopping at step {trainer.global_step}")
