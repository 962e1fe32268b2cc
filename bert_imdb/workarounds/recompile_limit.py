"""Raising torch.compile's limit of recompilations per code object, which torch (read from 2.13) sets only
through `torch._dynamo.config` ("recompile_limit" since torch 2.6, "cache_size_limit" before).

When to drop: tests/workarounds/test_private_names.py fails when the setting goes.
"""

import torch


def raise_recompile_limit(at_least: int) -> None:
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(getattr(config, limit), at_least))
