import os
import pickle
import re

import pytest
import torch
from conftest import REPO
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the project supports 3.10, where this skips


class RunsCode:
    def __reduce__(self):
        return os.getcwd, ()


def test_torch_loads_only_weights_unless_told_otherwise(tmp_path):
    """Lightning loads `--ckpt_path hpc` (and every path) with torch.load's default: since torch 2.6 that is
    weights_only=True, so a checkpoint cannot run code. Fails if a torch changes the default back."""
    path = tmp_path / "code.ckpt"
    torch.save({"state_dict": {}, "callback": RunsCode()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"GLOBAL posix\.getcwd"):
        torch.load(path)


def test_the_torch_floor_is_one_that_loads_only_weights_by_default():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (floor,) = [m.group(1) for d in dependencies if (m := re.fullmatch(r"torch>=([\d.]+)", d))]
    assert Version(floor) >= Version("2.6")
