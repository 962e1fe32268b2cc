"""Checkpoints that are whole or absent whatever moment a job is killed at, and that resume exactly."""

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO


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


class ExactResume(Callback):
    """Makes a run resumed from a mid-epoch checkpoint go on exactly as if it had never stopped.

    Lightning saves the model, optimizer, scheduler, loops and the position of a StatefulDataLoader, but
    (1) not the random generators' states (torch, CUDA, NumPy, Python: dropout, MLM masking), which this
    callback keeps in every checkpoint, as plain lists and tensors so checkpoints still load with
    `weights_only`; and (2) it never applies the saved data position when `configure_optimizers` asked for
    `trainer.estimated_stepping_batches`, as ours do: that builds the training iterator before the
    checkpoint is restored, and the fit loop then keeps it. Both are applied at `on_train_start`, after
    everything that draws random numbers while a run starts (Lightning 2.6).
    """

    def __init__(self):
        self._saved: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        numpy_state, python_state = np.random.get_state(), random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "python": [python_state[0], list(python_state[1]), python_state[2]],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        positions, loop._combined_loader_states_to_load = loop._combined_loader_states_to_load, []
        # From an end-of-epoch checkpoint the next epoch starts from its beginning anyway.
        if positions and loop._combined_loader is not None and loop.restarted_mid_epoch:
            loop._combined_loader._load_state_dicts(positions)
            iter(loop._data_fetcher)  # a fresh iterator, from the restored position
        if self._saved is not None:
            saved, self._saved = self._saved, None
            torch.set_rng_state(saved["torch"])
            if torch.cuda.is_available() and len(saved["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(saved["cuda"])
            name, keys, *rest = saved["numpy"]
            np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
            version, internal, gauss = saved["python"]
            random.setstate((version, tuple(internal), gauss))
