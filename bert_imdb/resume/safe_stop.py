"""SafeStop: a fit stopped by a signal stops where a checkpoint resumes exactly, on every process at the same
step. The one rule for when a signal's checkpoint may be saved; SlurmRequeue and StopOnSignal say what to
save and what to do next."""

import signal

import torch
from lightning.pytorch.callbacks import Checkpoint

from bert_imdb.distributed import TimedGroup
from bert_imdb.workarounds.validation_follows import validation_follows


def optimizer_step_taken(trainer, batch_idx: int) -> bool:
    """Whether the batch that just ended closed an optimizer step: Lightning steps after every
    accumulate_grad_batches-th batch of an epoch, and after its last. Accumulated gradients are not in
    checkpoints, so a save inside an accumulation window would lose its first micro-batches."""
    return (batch_idx + 1) % trainer.accumulate_grad_batches == 0 or trainer.is_last_batch


class SafeStop(Checkpoint):
    """The handler only notes a signal; the processes agree on the step through a small all-reduce of the
    signal on a gloo group, started at one step's end and read at the next (it never waits for the
    accelerator or blocks the step); the save comes at the first optimizer-step boundary after that. Where a
    validation follows that step, once it has run (workarounds/validation_follows.py says why); after an
    epoch's last batch, once the epoch has ended (LastCheckpoint says why).

    A `Checkpoint` (Lightning's base class for callbacks that save checkpoints), so that Lightning runs its
    hooks after those of EarlyStopping and ModelCheckpoint, as it runs ModelCheckpoint's: saved before them
    at a validation's end, the checkpoint missed the best checkpoint's update from that validation, which a
    resume does not replay (the named resume case "SLURM's checkpoint where a validation follows").
    """

    def __init__(self):
        self._signalled = 0  # the signal's number, once one came
        self._saved = self._at_epoch_end = self._after_validation = False
        self._requested = 0
        self._group = None
        self._pending = None
        self._flag = torch.zeros(1)

    def signals(self, trainer) -> tuple[signal.Signals, ...]:
        """The signals this callback answers in this run (none: it stays out of the way)."""
        raise NotImplementedError

    def stop(self, trainer, signum: int) -> None:
        """Save and stop, at a point where the checkpoint resumes exactly."""
        raise NotImplementedError

    def on_train_start(self, trainer, pl_module) -> None:
        signals = self.signals(trainer)
        if not signals:
            return
        for each in signals:
            signal.signal(each, self._note)
        if trainer.world_size > 1:
            self._group = TimedGroup(trainer)

    def _note(self, signum, frame) -> None:
        self._signalled = self._signalled or signum

    def _agreed(self) -> int:
        """The signal any process had by the end of the previous step (the same answer on all), or 0."""
        if self._group is None:
            return self._signalled
        agreed = 0
        if self._pending is not None:
            try:
                self._pending.wait()
            except RuntimeError as err:
                raise self._group.missing("the stop signal's agreement after a step", err) from None
            agreed = int(self._flag.item())  # a CPU tensor: no device to wait for
        self._flag = torch.tensor([float(self._signalled)])
        self._pending = torch.distributed.all_reduce(
            self._flag, op=torch.distributed.ReduceOp.MAX, group=self._group.group, async_op=True
        )
        return agreed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._saved or (self._group is None and not self._signalled and not self._requested):
            return
        self._requested = self._agreed() or self._requested
        if not (self._requested and optimizer_step_taken(trainer, batch_idx)):
            return
        self._saved = True
        if trainer.is_last_batch:
            self._at_epoch_end = True
        elif validation_follows(trainer):
            self._after_validation = True
        else:
            self.stop(trainer, self._requested)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._after_validation:
            self._after_validation = False
            self.stop(trainer, self._requested)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._at_epoch_end:
            self._at_epoch_end = False
            self.stop(trainer, self._requested)
