import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from bert_imdb.throughput import model_flops


def counted_flops(model, batch: dict, backward: bool) -> int:
    with FlopCounterMode(display=False) as counter:
        output = model(**batch)
        if backward:
            output.logits.float().sum().backward()
    return counter.get_total_flops()


def test_model_flops_match_torchs_count_of_the_matmuls(tiny_model):
    # Eager attention: its two matmuls are plain bmm's, which torch's counter counts exactly.
    for auto_class in (AutoModelForSequenceClassification, AutoModelForMaskedLM):
        model = auto_class.from_pretrained(tiny_model, attn_implementation="eager")
        lengths = torch.tensor([9, 9, 9])
        batch = {
            "input_ids": torch.randint(5, 40, (3, 9)),
            "attention_mask": torch.ones(3, 9, dtype=torch.long),
        }
        assert model_flops(model, lengths, backward=False) == counted_flops(model, batch, backward=False)
        assert model_flops(model, lengths) == counted_flops(model, batch, backward=True)


def test_padding_is_not_counted_as_model_work(tiny_model):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    one_long_three_short = model_flops(model, torch.tensor([40, 5, 5, 5]))
    assert one_long_three_short == model_flops(model, torch.tensor([40])) + 3 * model_flops(
        model, torch.tensor([5])
    )
    assert one_long_three_short < model_flops(model, torch.tensor([40, 40, 40, 40])) / 3
