"""What a batch holds beyond the model inputs, and the classifier's collator that builds it.

Collators add each example's real length in tokens (`LENGTHS`), read on the host before padding, and for
masked-LM batches the flat positions of the scored tokens (`MASKED_INDEX`): throughput, FLOPs, the padding
share and the attention mask are worked out from them without waiting for the device.
"""

import torch
from transformers import PreTrainedTokenizerBase

from bert_imdb.data.samplers import padded_length
from bert_imdb.data.truncation import REVIEW_TOKENS

LENGTHS = "lengths"
MASKED_INDEX = "masked_index"


class CollateWithStrings:
    """Pads a batch to its longest review (to a multiple of `pad_to_multiple_of`, at most `max_length`),
    with transformers' tokenizer.pad. Positions, ids and review texts, which are no model inputs, pass
    through as lists, and so do the reviews' real lengths (`lengths`), read here on the host before padding:
    throughput, FLOPs and the padding share are counted from them without waiting for the device. Each
    review's length before truncation (`review_tokens`) becomes a tensor that moves with the batch, for the
    accuracy by length.

    Takes a list of examples, or a dict of columns (a whole batch read at once, as the training loader's
    batch sampler does).
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_length: int, pad_to_multiple_of: int | None = None
    ):
        self.tokenizer, self.max_length, self.multiple = tokenizer, max_length, pad_to_multiple_of

    def __call__(self, features: list[dict] | dict) -> dict:
        if isinstance(features, dict):
            features = [dict(zip(features, row, strict=True)) for row in zip(*features.values(), strict=True)]
        strings = {
            key: [f.pop(key) for f in features] for key in ("index", "id", "text") if key in features[0]
        }
        whole = [f.pop(REVIEW_TOKENS) for f in features] if REVIEW_TOKENS in features[0] else None
        lengths = [len(f["input_ids"]) for f in features]
        width = padded_length(max(lengths), self.multiple, self.max_length)
        padded = self.tokenizer.pad(features, padding="max_length", max_length=width, return_tensors="pt")
        batch = {**padded, **strings, LENGTHS: lengths}
        if whole is not None:
            batch[REVIEW_TOKENS] = torch.tensor(whole)
        return batch


def with_host_counts(batch: dict, features: list[dict]) -> dict:
    """The batch with what the host knows before it moves: each example's length, and the flat positions of
    its scored tokens."""
    batch[LENGTHS] = [len(f["input_ids"]) for f in features]
    batch[MASKED_INDEX] = scored_positions(batch["labels"])
    return batch


def scored_positions(labels: torch.Tensor) -> torch.Tensor:
    """The flat positions of a masked-LM batch's scored tokens (labels other than -100), read from its CPU
    tensor: MaskedLanguageModel picks them without reading the mask back from the device."""
    return (labels.flatten() != -100).nonzero().squeeze(1)
