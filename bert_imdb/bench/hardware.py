"""What the machine gives: its dense matmul peak (for MFU), bf16 support, and a run's peak memory."""

import resource
import time

import torch

from bert_imdb import precision


def bf16_supported() -> bool:
    return precision.bf16_supported(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Dense square matmul throughput in FLOP/s, the best of three sizes: the most this machine's math
    units give a model."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = 0.0
    for n in (4096, 8192, 16384) if device == "cuda" else (1024, 2048, 4096):
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


def peak_memory() -> dict:
    memory = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if torch.cuda.is_available():
        memory["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return memory
