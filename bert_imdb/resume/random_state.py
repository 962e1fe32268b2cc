"""A process's random generators (torch, CUDA, NumPy, Python) as checkpoint-safe values, and back."""

import random
from typing import Any

import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    """This process's random generators (torch, CUDA, NumPy, Python), as plain lists and tensors so that
    checkpoints still load with `weights_only`."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }


def set_rng_states(saved: dict[str, Any]) -> None:
    torch.set_rng_state(saved["torch"])
    if torch.cuda.is_available() and len(saved["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(saved["cuda"])
    name, keys, *rest = saved["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_generators(seed: int, rank: int) -> None:
    """Seed this process's torch, NumPy and Python generators from (seed, rank)."""
    state = np.random.SeedSequence([seed, rank]).generate_state(2)
    value = int(state[0]) << 32 | int(state[1])
    torch.manual_seed(value)
    np.random.seed(int(state[0]))
    random.seed(value)
