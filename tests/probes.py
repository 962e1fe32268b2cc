"""Callbacks that tests load into fits they run in a subprocess (with this folder on PYTHONPATH), e.g.
`--trainer.callbacks+=probes.KillDuringCheckpointWrite`."""

import hashlib
import json
import os
import signal
import time
import traceback
from pathlib import Path

import lightning as L
import torch

from bert_imdb.models.classifier import SentimentClassifier


class KillDuringCheckpointWrite(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

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


class RecordTrainingSamples(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, folder: str):
        """Write, per rank, a fingerprint of every training example it saw to <folder>/rank<N>.json.

        Args:
            folder: Where the files go.
        """
        self.folder, self.seen = Path(folder), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True):
            real = [token for token, keep in zip(ids, mask, strict=True) if keep]
            self.seen.append(hashlib.sha1(json.dumps(real).encode()).hexdigest())

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


class MarkTraining(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, path: str, step: int = 3):
        """Write the global step at the start of training to <path>.start, and touch <path> once training
        has reached `step`: the moment a test may signal the run.

        Args:
            path: The marker file.
            step: The step to touch it at.
        """
        self.path, self.step = Path(path), step

    def on_train_start(self, trainer, pl_module) -> None:
        self.path.with_suffix(".start").write_text(str(trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.path.touch()


class KillAtStep(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, step: int, process_group: bool = False):
        """SIGKILL the run once it has finished optimizer step `step`.

        Args:
            step: The global step to die at.
            process_group: Kill every process of the run's process group (all DDP ranks, as a lost node
                would), not only this one: start the run in a session of its own.
        """
        self.step, self.process_group = step, process_group

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            if self.process_group:
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)


class RecordMasks(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, folder: str, batches: int = 2):
        """Write, per rank, which positions of its first `batches` training batches were masked for MLM, and
        which were special tokens or padding (never masked), to <folder>/rank<N>.json.

        Args:
            folder: Where the files go.
            batches: How many batches to record.
        """
        self.folder, self.batches, self.seen = Path(folder), batches, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx < self.batches:
            tokenizer = trainer.datamodule.tokenizer
            special = set(tokenizer.all_special_ids) - {tokenizer.mask_token_id}
            masked = (batch["labels"] != -100).tolist()
            fixed = [[token in special for token in row] for row in batch["input_ids"].tolist()]
            self.seen.append({"masked": masked, "special": fixed})
        if batch_idx == self.batches - 1:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


class KillDuringValidation(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, epoch: int):
        """SIGKILL the run in the middle of the validation that ends training epoch `epoch` (0-based; the
        sanity check does not count), after its first batch.

        Args:
            epoch: The epoch whose validation to die in.
        """
        self.epoch = epoch

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


class RecordMetrics(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, path: str):
        """Write the metrics of a validate or test run (as every process holds them, from rank 0) to `path`.

        Args:
            path: The JSON file.
        """
        self.path = Path(path)

    def _write(self, trainer) -> None:
        if trainer.is_global_zero:
            self.path.write_text(json.dumps({k: float(v) for k, v in trainer.callback_metrics.items()}))

    def on_validation_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer)


class SlowFirstRun(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, seconds: float, after_step: int = 2, marker: str | None = None):
        """In the first run of a SLURM job (not a requeued one), sleep this long after every step from
        `after_step` on, so that the job is still training when SLURM's warning signal arrives.

        Args:
            seconds: Sleep per step.
            after_step: The first step to sleep after.
            marker: A file created when the first sleep starts: the job is training, its handlers set.
        """
        self.seconds, self.after_step, self.marker = seconds, after_step, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        first_run = os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
        if "SLURM_JOB_ID" in os.environ and first_run and trainer.global_step >= self.after_step:
            if self.marker is not None:
                Path(self.marker).touch()
            time.sleep(self.seconds)


READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


class NoTensorReads(L.Callback):
    """Record every read of a tensor's values on the host (.item(), .tolist(), .cpu(), int(), bool(), ...)
    from the start of each training or validation batch to the end of its last batch-end hook: on a GPU
    each would wait for the device. Runs last among the callbacks, so theirs are watched too."""

    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self):
        self.reads: list[str] = []
        self._originals = {name: getattr(torch.Tensor, name) for name in READS}

    def setup(self, trainer, pl_module, stage: str) -> None:
        trainer.callbacks.remove(self)
        trainer.callbacks.append(self)

    def _watching(self, on: bool) -> None:
        for name, original in self._originals.items():
            if not on:
                setattr(torch.Tensor, name, original)
                continue

            def read(tensor, *args, _name=name, _original=original, **kwargs):
                self.reads.append("".join(traceback.format_stack(limit=6)[:-1]) + f"Tensor.{_name}")
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, read)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._watching(True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._watching(False)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._watching(True)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._watching(False)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._watching(False)


class RecordTrainedBatches(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, path: str):
        """Append, for every training batch, its step, epoch, learning rate and a fingerprint of its tokens,
        masks and labels to the JSON-lines file `path` (rank 0).

        Args:
            path: The file.
        """
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank != 0:
            return
        parts = [batch[key].tolist() for key in ("input_ids", "attention_mask", "labels") if key in batch]
        row = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "batch": hashlib.sha1(json.dumps(parts).encode()).hexdigest(),
        }
        with self.path.open("a") as file:
            file.write(json.dumps(row) + "\n")


class SmoothedClassifier(SentimentClassifier):
    """The classifier with one argument more, as a later version of bert_imdb might add one."""

    def __init__(self, label_smoothing: float = 0.0, **kwargs):
        """
        Args:
            label_smoothing: The new argument.
        """
        super().__init__(**kwargs)
        self.label_smoothing = label_smoothing


class SignalAtStep(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, batch: int, signum: int = 15, times: int = 1):
        """Send this process a signal at the end of a training batch, as a scheduler or a user would.

        Args:
            batch: The first epoch's batch (from 0) after which to send it.
            signum: The signal's number (15: SIGTERM, 2: SIGINT, 10: SIGUSR1).
            times: How many times to send it.
        """
        self.batch, self.signum, self.times, self.sent = batch, signum, times, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.batch and not self.sent:
            self.sent = True
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


class StopAtBatch(L.Callback):
    """Stops the fit after the given batch of the first epoch, as Lightning's Timer does on `max_time`:
    wherever that batch falls in an accumulation window."""

    changes_training = False

    def __init__(self, batch: int):
        self.batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.batch:
            trainer.should_stop = True


class QuitRank(L.Callback):
    changes_training = False  # a probe: a resume may add or drop it (resume/settings_record.py)

    def __init__(self, rank: int = 1):
        """One process gone at the end of a test epoch (before the module gathers its reviews), with exit
        status 0: nothing takes the job down for it.

        Args:
            rank: The process that goes.
        """
        self.rank = rank

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == self.rank:
            os._exit(0)
