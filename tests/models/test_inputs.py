import pytest
import torch
from transformers import AutoModelForSequenceClassification

from bert_imdb.models.classifier import SentimentClassifier
from bert_imdb.models.inputs import model_inputs

NAMES = ("input_ids", "attention_mask", "token_type_ids")


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("lengths", [[9, 4, 6], [9, 9, 9]], ids=["padded", "unpadded"])
def test_the_prepared_mask_gives_the_models_own_outputs(tiny_model, attn_implementation, lengths):
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model, attn_implementation=attn_implementation
    )
    model.eval()
    ids = torch.randint(5, 40, (3, 9))
    mask = torch.tensor([[1] * n + [0] * (9 - n) for n in lengths])
    batch = {"input_ids": ids * mask, "attention_mask": mask, "lengths": lengths, "text": ["a", "b", "c"]}
    inputs = model_inputs(batch, NAMES, attn_implementation)
    assert ("attention_mask" in inputs) == (lengths != [9, 9, 9])  # no padding, no mask
    with torch.no_grad():
        own = model(input_ids=batch["input_ids"], attention_mask=mask).logits
        prepared = model(**inputs).logits
    assert torch.allclose(own, prepared, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_eager_attention_runs_a_padded_batch_in_half_precision_weights(tiny_model, dtype):
    """bf16-true and 16-true hold the weights in half precision: the eager mask must be built in it (a float32
    one ended in "expected m1 and m2 to have the same dtype" on the first padded batch)."""
    module = SentimentClassifier(tiny_model, attn_implementation="eager").to(dtype).eval()
    lengths = [9, 4, 6]
    mask = torch.tensor([[1] * n + [0] * (9 - n) for n in lengths])
    batch = {"input_ids": torch.randint(5, 40, (3, 9)) * mask, "attention_mask": mask, "lengths": lengths}
    batch["labels"] = torch.tensor([0, 1, 0])
    with torch.no_grad():
        own = module.model(input_ids=batch["input_ids"], attention_mask=mask).logits
        prepared = module(batch)
    assert prepared.dtype == dtype and torch.allclose(own.float(), prepared.float(), atol=1e-2)
