"""Model FLOPs of a step, counted from the weights and the real lengths of its sequences: for throughput and
MFU, on the host."""

from collections.abc import Sequence

from torch import nn

from bert_imdb.data.collate import MASKED_INDEX

# Heads that run once per sequence (on [CLS]), not once per token.
PER_SEQUENCE_HEADS = ("pooler", "classifier", "seq_relationship")


# The masked-LM head, which MaskedLanguageModel runs on the scored (masked) positions only.
MASKED_LM_HEAD = "cls.predictions"


class FlopCounter:
    """Model FLOPs of a step on sequences of given real lengths, forward and (by default) backward.

    The usual count for MFU (Kaplan et al. 2020, PaLM appendix B): forward, 2 FLOPs per weight of every
    linear layer per token it is applied to, plus 4 x layers x hidden x length per token for attention's
    two matmuls (queries x keys, weights x values); backward, twice that. Padding positions are not
    counted: they are wasted work, not model work. Embedding lookups and element-wise operations are
    left out. The weights are counted once, when the counter is made, not at every step.
    """

    def __init__(self, model: nn.Module):
        self.per_token = self.per_sequence = self.per_masked = 0
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                weights = module.weight.numel()
                if any(head in name for head in PER_SEQUENCE_HEADS):
                    self.per_sequence += weights
                elif MASKED_LM_HEAD in name:
                    self.per_masked += weights
                else:
                    self.per_token += weights
        self.attention = 4 * model.config.num_hidden_layers * model.config.hidden_size

    def __call__(self, lengths: Sequence[int], masked: int | None = None, backward: bool = True) -> int:
        """`masked`: how many positions the masked-LM head ran on (None: all of them)."""
        tokens = sum(lengths)
        head = self.per_masked * (tokens if masked is None else masked)
        attention = self.attention * sum(length * length for length in lengths)
        forward = 2 * (self.per_token * tokens + self.per_sequence * len(lengths) + head) + attention
        return 3 * forward if backward else forward


def model_flops(model: nn.Module, lengths: Sequence[int], backward: bool = True) -> int:
    """FlopCounter(model)(lengths): a one-off count, with every position through the whole model."""
    return FlopCounter(model)(lengths, backward=backward)


def head_positions(module, batch: dict) -> int | None:
    """How many positions the masked-LM head ran on in this batch: the scored ones (known from a tensor's
    shape) where `module` runs it on those only, else None: every position."""
    index = batch.get(MASKED_INDEX)
    if index is None or not getattr(module, "head_on_scored_positions", False):
        return None
    return len(index)
