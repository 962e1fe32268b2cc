"""What the machine gives: its dense matmul peak (for MFU), bf16 support, and a run's peak memory."""

import resource
import time

import torch

from bert_imdb import precision


def bf16_supported() -> bool:
    return precision.bf16_supported(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0, size: int | None = None) -> float:
    """Dense square matmul throughput in FLOP/s, the best of three sizes (or of `size` alone): the most
    this machine's math units give a model."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = 0.0
    sizes = (4096, 8192, 16384) if device == "cuda" else (1024, 2048, 4096)
    for n in sizes if size is None else (size,):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(10 if device == "cuda" else 1):
                a @ b
                count += 1
            if device == "cuda":
                torch.cuda.synchronize()
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best


# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, in FLOP/s, by the name torch
# reports; the SXM parts (H100 PCIe: 756 TFLOP/s). MFU against them is what papers quote; the matmul
# peak measured in the same run (matmul_peak) says what this machine's clocks and power allowed.
DATASHEET_BF16_PEAKS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def datasheet_bf16_peak() -> float | None:
    """The datasheet's dense bf16 peak of this machine's GPU, or None (a CPU, or a card not listed)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for card, peak in DATASHEET_BF16_PEAKS.items() if card in name), None)


def peak_memory() -> dict:
    memory = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if torch.cuda.is_available():
        memory["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return memory
