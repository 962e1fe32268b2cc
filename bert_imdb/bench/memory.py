"""MemoryByStage: where a run's resident memory goes, stage by stage (tokenization, training, validation,
test), for `--trainer.callbacks+=bert_imdb.bench.memory.MemoryByStage`.

Linux only: it reads the process's resident set and its peak from /proc/self/status and resets the peak
between stages (writing 5 to /proc/self/clear_refs), and reads glibc's heap statistics (mallinfo2): memory
the heap holds but no live object uses is fragmentation, which a peak of live tensors does not show. torch
keeps no statistics of CPU allocations, hence the code.
"""

import ctypes
import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback

GB = 2**30


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _status() -> dict[str, float]:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            found[key] = int(value.split()[0]) * 1024 / GB
    return found


def _heap() -> dict[str, float]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    # In use: small blocks handed out plus mmapped large ones; free: held by the heap, used by nothing.
    return {"heap_in_use_gb": (info.uordblks + info.hblkhd) / GB, "heap_free_gb": info.fordblks / GB}


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class MemoryByStage(Callback):
    def __init__(self, path: str = "memory_by_stage.json", every_n_steps: int = 50):
        """Record the resident memory of each stage of a run in a JSON file.

        Args:
            path: The JSON file to write (rewritten after every stage, so a killed run leaves its stages).
            every_n_steps: Also record the training stage every this many steps, to see whether it grows.
        """
        self.path, self.every = Path(path), every_n_steps
        self.stages: list[dict] = []

    def _record(self, stage: str, trainer) -> None:
        status = _status()
        self.stages.append(
            {
                "stage": stage,
                "step": trainer.global_step,
                "peak_rss_gb": status.get("VmHWM"),  # since the previous record
                "rss_gb": status.get("VmRSS"),
                "anonymous_gb": status.get("RssAnon"),
                "file_backed_gb": status.get("RssFile"),
                **_heap(),
            }
        )
        self.path.write_text(json.dumps(self.stages, indent=1))
        _reset_peak()

    def setup(self, trainer, pl_module, stage: str) -> None:
        # After prepare_data and the data module's setup: the model is loaded and the reviews tokenized.
        self._record(f"model loaded and reviews tokenized ({getattr(stage, 'value', stage)})", trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._record("training", trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        stage = "training" if trainer.state.fn == "fit" else "start"
        last = self.stages[-1] if self.stages else {}
        if (last.get("stage"), last.get("step")) != (stage, trainer.global_step):  # recorded just before
            self._record(stage, trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._record("validation", trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._record("training", trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._record("test", trainer)
