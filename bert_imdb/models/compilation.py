"""torch.compile for the encoder, dynamic or with CUDA graphs."""

from typing import Literal

from torch import nn

from bert_imdb.workarounds.recompile_limit import raise_recompile_limit

# Graphs a CUDA-graphs model may hold: a training and an evaluation graph per batch shape (at most 9
# training shapes at max_length 512 with bucketed padding, a few more for evaluation's batch sizes).
STATIC_GRAPHS = 64


def compile_in_place(model: nn.Module, how: bool | Literal["reduce-overhead"]) -> None:
    """Compile `model` in place (nn.Module.compile, not torch.compile(model): the state dict keeps its key
    names, so checkpoints load into an uncompiled model).

    True: dynamic shapes, so a batch of a new length does not recompile. "reduce-overhead": CUDA graphs,
    which replay a whole step's kernels in one launch; they need static shapes, one graph per shape, so
    torch's limit of recompilations (8 by default, per code object) is raised to hold them all.
    """
    if how == "reduce-overhead":
        raise_recompile_limit(STATIC_GRAPHS)
        model.compile(mode="reduce-overhead", dynamic=False)
    else:
        model.compile(dynamic=True)
