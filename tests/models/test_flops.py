import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from bert_imdb.data.collate import MASKED_INDEX
from bert_imdb.models.flops import FlopCounter, head_positions, model_flops
from bert_imdb.models.masked_lm import MaskedLanguageModel


def counted_flops(run, backward: bool) -> int:
    with FlopCounterMode(display=False) as counter:
        output = run()
        if backward:
            output.float().sum().backward()
    return counter.get_total_flops()


def test_model_flops_match_torchs_count_of_the_matmuls(tiny_model):
    # Eager attention: its two matmuls are plain bmm's, which torch's counter counts exactly.
    for auto_class in (AutoModelForSequenceClassification, AutoModelForMaskedLM):
        model = auto_class.from_pretrained(tiny_model, attn_implementation="eager")
        batch = {
            "input_ids": torch.randint(5, 40, (3, 9)),
            "attention_mask": torch.ones(3, 9, dtype=torch.long),
        }
        for backward in (False, True):
            counted = counted_flops(lambda: model(**batch).logits, backward)  # noqa: B023
            assert model_flops(model, [9, 9, 9], backward=backward) == counted


def masked_batch(scored: list[tuple[int, int]]) -> dict:
    """Three unpadded sequences of 9 tokens, with the masked-LM labels at the `scored` (row, column)s."""
    labels = torch.full((3, 9), -100)
    for n, (row, column) in enumerate(scored):
        labels[row, column] = 7 + n
    return {
        "input_ids": torch.randint(5, 40, (3, 9)),
        "attention_mask": torch.ones(3, 9, dtype=torch.long),
        "labels": labels,
        MASKED_INDEX: (labels.flatten() != -100).nonzero().squeeze(1),
    }


def test_the_masked_lm_head_is_counted_on_the_scored_positions_only(tiny_model):
    # Eager attention: its two matmuls are plain bmm's, which torch's counter counts exactly.
    module = MaskedLanguageModel(tiny_model, attn_implementation="eager")
    batch = masked_batch([(0, 2), (1, 5), (2, 7), (2, 1)])
    counted = counted_flops(lambda: module._forward(batch)[0], backward=True)
    assert FlopCounter(module.model)([9, 9, 9], masked=4) == counted


def test_padding_is_not_counted_as_model_work(tiny_model):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    one_long_three_short = model_flops(model, [40, 5, 5, 5])
    assert one_long_three_short == model_flops(model, [40]) + 3 * model_flops(model, [5])
    assert one_long_three_short < model_flops(model, [40, 40, 40, 40]) / 3


@pytest.mark.parametrize(
    "scored_only", [True, False], ids=["head on scored positions", "head on every position"]
)
def test_the_throughput_count_takes_the_head_where_it_ran(tiny_model, scored_only):
    """With head_on_masked_only false the head runs on every position, and so must the count (it counted the
    scored ones only)."""
    module = MaskedLanguageModel(tiny_model, attn_implementation="eager", head_on_masked_only=scored_only)
    batch = masked_batch([(0, 2), (1, 5), (2, 7)])
    counted = counted_flops(lambda: module._forward(batch)[0], backward=True)
    assert FlopCounter(module.model)([9, 9, 9], masked=head_positions(module, batch)) == counted
