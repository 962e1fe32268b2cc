"""The "auto" values of the data settings, resolved for the device a run computes on."""

from typing import Literal

import lightning as L
import torch

# data.pad_to_multiple_of "auto" on accelerators: few shapes (8 at max_length 512), little padding.
ACCELERATOR_PAD_MULTIPLE = 64
# data.eval_batch_size "auto". On CPUs small batches score more tokens a second: all-MiniLM-L6-v2 in batches
# of 8 evaluated 1.31x the tokens/s of batches of 64 on an EPYC in fp32, 1.45x on a Xeon in bf16
# (docs/speed.md). Accelerators need large ones to fill their cores.
CPU_EVAL_BATCH, ACCELERATOR_EVAL_BATCH = 8, 64


def run_device(trainer: L.Trainer | None) -> torch.device:
    """The device a datamodule's batches go to: its trainer's, or the CPU outside one."""
    return trainer.strategy.root_device if trainer is not None else torch.device("cpu")


def eval_batch(size: int | Literal["auto"], device: torch.device) -> int:
    """data.eval_batch_size, with "auto" resolved for `device`."""
    if size == "auto":
        return CPU_EVAL_BATCH if device.type == "cpu" else ACCELERATOR_EVAL_BATCH
    return size


def pad_multiple(multiple: int | Literal["auto"] | None, device: torch.device) -> int | None:
    """data.pad_to_multiple_of, with "auto" resolved for `device`."""
    if multiple == "auto":
        return None if device.type == "cpu" else ACCELERATOR_PAD_MULTIPLE
    return multiple
