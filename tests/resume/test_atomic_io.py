import errno

import pytest
import torch

from bert_imdb.errors import UserError
from bert_imdb.resume.atomic_io import AtomicCheckpointIO


def test_a_save_that_fails_leaves_the_previous_checkpoint_and_no_partial(tmp_path, monkeypatch):
    """A full disk left last.ckpt.partial behind, and a traceback."""
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)

    def disk_full(obj, file):
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        UserError, match=rf"cannot write checkpoint {target} \(No space left on device; it needs about"
    ):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.load(target, weights_only=True) == {"step": 1}
