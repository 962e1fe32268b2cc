"""bf16 only where the hardware computes in it: elsewhere it is emulated, many times slower than fp32."""

import logging
import os

import torch

from bert_imdb.errors import UserError
from bert_imdb.workarounds.cpu_bf16 import cpu_has_native_bf16

log = logging.getLogger(__name__)


# Overrides what the CPU is found to compute in: 0 treats it as a CPU without bf16 (what such a CPU runs: the
# suite's rehearsal of the slowest CPU kind, docs/testing.md), 1 as one with it.
CPU_BF16 = "BERT_IMDB_CPU_BF16"


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        told = os.environ.get(CPU_BF16)
        if told not in (None, "0", "1"):
            raise UserError(f"{CPU_BF16}={told}: set it to 0 (no bf16 on this CPU) or 1, or unset it")
        return cpu_has_native_bf16() if told is None else told == "1"
    return True  # other accelerators: torch and Lightning decide


def checked_precision(precision: str, device: torch.device) -> str:
    """The precision to train in: `precision`, except bf16-mixed on a CPU without bf16 arithmetic, which
    falls back to 32-true (with a warning: the same weights and updates, more exact, far faster than
    emulated bf16). Any other bf16 where it would be emulated is refused."""
    precision = str(precision)
    if not precision.startswith("bf16") or bf16_supported(device):
        return precision
    if device.type == "cpu" and precision == "bf16-mixed":
        log.warning(
            "trainer.precision=bf16-mixed: this CPU has no bf16 arithmetic (it would be emulated, many "
            "times slower than fp32), so training runs in 32-true"
        )
        return "32-true"
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    fix = "16-mixed" if device.type == "cuda" else "32-true"
    raise UserError(
        f"trainer.precision={precision} needs bf16 arithmetic, which this {what} lacks "
        f"(it would be emulated, many times slower than fp32): set --trainer.precision={fix}"
    )
