"""Checkpoints that are whole or absent whatever moment a job is killed at, and that resume exactly."""

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loops import _Loop
from lightning.pytorch.loops.fit_loop import _FitLoop
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bert_imdb.errors import UserError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to `<name>.partial` beside its target, syncs it to disk, then renames it over
    the target. A rename within one folder is atomic, so a job killed at any moment (preemption, OOM
    killer, SIGKILL) leaves the previous `last.ckpt` or the new one, never a torn file.

    Written by hand because Lightning's own save stages the file in the system temp folder through an
    fsspec transaction and then moves it: where that folder is on another filesystem than the
    checkpoints (local /tmp, checkpoints on NFS or Lustre, as on most clusters) the move is a copy.
    Remote paths (s3://, gs://, ...) keep Lightning's save.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, target)


def _rng_states() -> dict[str, Any]:
    """This process's random generators (torch, CUDA, NumPy, Python), as plain lists and tensors so that
    checkpoints still load with `weights_only`."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }


def _set_rng_states(saved: dict[str, Any]) -> None:
    torch.set_rng_state(saved["torch"])
    if torch.cuda.is_available() and len(saved["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(saved["cuda"])
    name, keys, *rest = saved["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))


def _seed_generators(seed: int, rank: int) -> None:
    """Seed this process's torch, NumPy and Python generators from (seed, rank)."""
    state = np.random.SeedSequence([seed, rank]).generate_state(2)
    value = int(state[0]) << 32 | int(state[1])
    torch.manual_seed(value)
    np.random.seed(int(state[0]))
    random.seed(value)


class ExactResume(Callback):
    """Makes a resumed run go on exactly as if it had never stopped, on every process.

    Lightning saves the model, optimizer, scheduler, loops and the position of a StatefulDataLoader, but
    (1) not the random generators (dropout, MLM masking): this callback keeps every process's own in each
    checkpoint and gives each process its own back; and (2) it never applies the saved data position when
    `configure_optimizers` asked for `trainer.estimated_stepping_batches`, as ours do: that builds the
    training iterator before the checkpoint is restored, and the fit loop then keeps it. Both are applied at
    `on_train_start`, after everything that draws random numbers while a run starts (Lightning 2.6).

    With several processes, each starts training from generators seeded by (seed, rank): seed_everything
    gives every process the same seed, so each would otherwise draw the same dropout and MLM masks.

    A checkpoint resumes only with the number of processes, batch size and gradient accumulation it was
    trained with: anything else would train other batches than the run that was stopped.
    """

    def __init__(self):
        self._saved: dict[str, Any] | None = None
        self._trainer = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer, states = self._trainer, _rng_states()
        ranks = [states]
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            # Every process saves a checkpoint (only rank 0 writes it): gather each one's generators.
            ranks = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, states)
        return {
            "ranks": ranks,
            "world_size": trainer.world_size if trainer is not None else 1,
            "accumulate_grad_batches": trainer.accumulate_grad_batches if trainer is not None else 1,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = state_dict

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != "fit":  # evaluating or predicting from a checkpoint resumes nothing
            return
        mine = checkpoint.get("callbacks", {}).get(self.state_key, {})
        data = trainer.datamodule.hparams if trainer.datamodule is not None else {}
        then = {
            "processes": mine.get("world_size"),
            "data.batch_size": checkpoint.get("datamodule_hyper_parameters", {}).get("batch_size"),
            "trainer.accumulate_grad_batches": mine.get("accumulate_grad_batches"),
        }
        now = {
            "processes": trainer.world_size,
            "data.batch_size": data.get("batch_size"),
            "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
        }
        changed = [
            key for key in then if then[key] is not None and now[key] is not None and then[key] != now[key]
        ]
        if changed:
            was = ", ".join(f"{key} {then[key]}" for key in changed)
            is_now = ", ".join(f"{now[key]}" for key in changed)
            raise UserError(
                f"checkpoint {trainer.ckpt_path} was trained with {was}, this run has {is_now}: resume with "
                "the same trainer.devices x trainer.num_nodes, data.batch_size and accumulation, or start a "
                "new fit without --ckpt_path"
            )

    def on_train_start(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        positions, loop._combined_loader_states_to_load = loop._combined_loader_states_to_load, []
        mid_epoch = loop.restarted_mid_epoch
        if positions and loop._combined_loader is not None and mid_epoch:
            loop._combined_loader._load_state_dicts(positions)
            iter(loop._data_fetcher)  # a fresh iterator, from the restored position
        saved, self._saved = self._saved, None
        if saved is None:
            if trainer.world_size > 1:
                _seed_generators(torch.initial_seed(), trainer.global_rank)
            return
        # Checkpoints from before every rank's generators were kept hold one process's, unlisted.
        ranks = saved.get("ranks", [saved])
        _set_rng_states(ranks[trainer.global_rank])
        if not mid_epoch:
            # The run that was stopped began its next epoch's iterator after this checkpoint, drawing from
            # the generators just restored (the DataLoader's base seed); so must this one. The first batch
            # is only fetched once the epoch starts, after the sampler is told its epoch.
            iter(loop._data_fetcher)


class EpochEndResumeFitLoop(_FitLoop):
    """Lightning's fit loop, resuming correctly from a checkpoint saved at the end of an epoch when
    `max_steps` is set.

    Lightning 2.6 (read from 2.6.6, `_FitLoop.restarting`) treats every resume of a run with `max_steps` as
    a restart inside an epoch, even when the checkpoint's epoch was over (saved in `on_train_epoch_end`, as
    last.ckpt is): the next epoch then finds its batch counters at the end of the previous one, ends at
    once, and is counted as trained. A run killed after epoch 0 of 3 and resumed stopped at "max_epochs=3
    reached" having trained two epochs (Lightning's issue #19617 is a neighbour). Here a finished epoch is
    never a restart, which is what Lightning already does when only `max_epochs` is set.
    `tests/test_checkpointing.py` holds both the bug in the plain loop and the fix.
    """

    @_Loop.restarting.setter
    def restarting(self, restarting: bool) -> None:
        progress = self.epoch_progress.current
        epoch_unfinished = any(v != progress.processed for v in (progress.ready, progress.started))
        _Loop.restarting.fset(self, restarting and epoch_unfinished)

    @classmethod
    def install(cls, trainer) -> None:
        """Swap the trainer's fit loop for this one (`Trainer.fit_loop` is settable), keeping its epoch loop."""
        old = trainer.fit_loop
        loop = cls(trainer, min_epochs=old.min_epochs, max_epochs=old.max_epochs)
        loop.epoch_loop = old.epoch_loop
        trainer.fit_loop = loop


class LastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for last.ckpt: at the end of every epoch, after its validation, and every
    `every_n_train_steps` steps if set, except after an epoch's last batch, where the epoch's own save
    follows.

    Lightning 2.6 resumes a checkpoint saved after an epoch's last batch (before its validation) wrongly: it
    counts the epoch as done without validating it, then starts the next epoch from the saved end of the
    data, which is at once exhausted, so a whole epoch is never trained (seen: a 48-step run resumed from
    step 16 of 16 ended at step 32). Checkpoints at the end of an epoch resume exactly
    (tests/test_checkpointing.py), so that is where this one saves instead. With `every_n_train_steps` set,
    ModelCheckpoint saves at no epoch's end, so the epoch's save is made here, through its own private
    `_save_topk_checkpoint` (read from Lightning 2.6.6; the test grid fails if it changes).
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.every_n_epochs == 0 and not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
