"""Whether a CPU computes in bf16 natively, which torch (read from 2.13) answers only through private
functions: its public `torch.cpu.is_bf16_supported`-style check (mkldnn) also accepts plain AVX-512, where
oneDNN emulates bf16, many times slower than fp32.

Private names: `torch.cpu._is_avx512_bf16_supported`, `torch.cpu._is_amx_tile_supported`,
`torch.ops.mkldnn._is_mkldnn_bf16_supported`. When to drop: tests/workarounds/test_private_names.py fails when
these names go.
"""

import platform

import torch


def cpu_has_native_bf16() -> bool:
    if platform.machine() in ("x86_64", "AMD64"):
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()
