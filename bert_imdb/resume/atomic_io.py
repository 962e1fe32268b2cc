"""Checkpoint files that are whole or absent, whatever moment a job is killed at."""

import os
import shutil
from pathlib import Path
from typing import Any

import torch
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
        try:
            with partial.open("wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
        except BaseException as err:
            partial.unlink(missing_ok=True)  # a failed save leaves the previous checkpoint, and nothing else
            if isinstance(err, OSError):
                raise UserError(
                    f"cannot write checkpoint {target} ({err.strerror or err}; it needs about "
                    f"{_megabytes(checkpoint)} MB, {shutil.disk_usage(target.parent).free / 2**20:.0f} MB are "
                    "free): free space there, or point --trainer.default_root_dir (or the logger's save_dir) "
                    "at a writable disk"
                ) from err
            raise


def _megabytes(value) -> str:
    """The size of the tensors a checkpoint holds (its file is that and a little more)."""

    def size(item) -> int:
        if torch.is_tensor(item):
            return item.nelement() * item.element_size()
        if isinstance(item, dict):
            return sum(size(v) for v in item.values())
        if isinstance(item, (list, tuple)):
            return sum(size(v) for v in item)
        return 0

    return f"{size(value) / 2**20:.1f}"
