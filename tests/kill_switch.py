"""A callback that kills its own process with SIGKILL, for the kill-safety tests, which run fits in a
subprocess with this folder on PYTHONPATH: `--trainer.callbacks+=kill_switch.KillDuringCheckpointWrite`."""

import os
import signal

import lightning as L


class KillDuringCheckpointWrite(L.Callback):
    def __init__(self, nth: int = 2):
        """SIGKILL during the nth write of last.ckpt: its bytes are on disk, the rename has not happened.

        Args:
            nth: Which write of last.ckpt to die in.
        """
        self.nth, self.writes = nth, 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        sync = os.fsync

        def fsync_then_die(fd: int) -> None:
            sync(fd)
            if os.readlink(f"/proc/self/fd/{fd}").endswith("last.ckpt.partial"):
                self.writes += 1
                if self.writes == self.nth:
                    os.kill(os.getpid(), signal.SIGKILL)

        os.fsync = fsync_then_die
