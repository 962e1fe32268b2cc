"""Whether a transformers model runs its attention through transformers' attention interface, and so takes
the 4D attention masks models/inputs.py prepares, which transformers (read from 5.25) says only through the
private class attribute `_supports_attention_backend`. Models with attention of their own (DeBERTa-v2) read
a mask as 0/1 and would take the prepared additive mask for another: they get the plain 2D mask.

Private name: `PreTrainedModel._supports_attention_backend`. When to drop: tests/workarounds/
test_private_names.py fails when BERT stops reporting it (or DeBERTa-v2 starts).
"""


def takes_prepared_masks(model) -> bool:
    return bool(getattr(type(model), "_supports_attention_backend", False))
