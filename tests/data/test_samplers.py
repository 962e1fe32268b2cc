import numpy as np
import pytest
import torch
from datasets import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from transformers import AutoTokenizer

from bert_imdb.data.collate import CollateWithStrings
from bert_imdb.data.device_defaults import ACCELERATOR_PAD_MULTIPLE
from bert_imdb.data.pretraining import IMDbPretrainingDataModule
from bert_imdb.data.samplers import LengthGroupedSampler, padded_length
from bert_imdb.data.sentiment import IMDbDataModule
from bert_imdb.errors import UserError

# Long-tailed like IMDb: most reviews short, a few very long.
LENGTHS = np.random.default_rng(0).lognormal(5.3, 0.7, size=1003).astype(int).clip(10, 512)


def padded_fraction(batch_list: list[list[int]]) -> float:
    padded = sum(len(b) * LENGTHS[b].max() for b in batch_list)
    return 1 - sum(LENGTHS[b].sum() for b in batch_list) / padded


def test_grouped_batches_cover_every_example_once_and_pad_far_less_than_random():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=8, seed=1)
    grouped = list(sampler)
    assert sorted(i for b in grouped for i in b) == list(range(len(LENGTHS)))
    assert len(sampler) == len(grouped) == 126
    # Only one batch is short (1003 = 125 x 8 + 3).
    assert sorted(len(b) for b in grouped) == [3] + [8] * 125
    shuffled = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(1)).tolist()
    random = [shuffled[i : i + 8] for i in range(0, len(shuffled), 8)]
    assert padded_fraction(grouped) < padded_fraction(random) / 4


def test_order_follows_seed_and_epoch():
    a, b, c = (LengthGroupedSampler(LENGTHS, 8, seed=s) for s in (1, 1, 2))
    assert list(a) == list(b) != list(c)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("max_tokens", [None, 2048])
def test_processes_get_distinct_batches_as_many_and_of_like_length_at_each_step(world_size, max_tokens):
    ranks = [
        LengthGroupedSampler(LENGTHS, 8, num_replicas=world_size, rank=r, seed=1, max_tokens=max_tokens)
        for r in range(world_size)
    ]
    per_rank = [list(sampler) for sampler in ranks]
    assert len({len(batches) for batches in per_rank}) == 1
    assert [len(sampler) for sampler in ranks] == [len(batches) for batches in per_rank]
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert set(seen) == set(range(len(LENGTHS)))
    # Repeats only to even out the batch count: fewer than one batch per process.
    assert (
        len([b for batches in per_rank for b in batches])
        - len(set(map(tuple, (b for r in per_rank for b in r))))
        < world_size
    )
    # At each step the processes' batches are about as long: none waits long for another. Dealt out from
    # a shuffled list of batches instead, as before, the median gap was over 40%.
    gaps = [
        1 - min(LENGTHS[b].max() for b in step) / max(LENGTHS[b].max() for b in step)
        for step in zip(*per_rank, strict=True)
    ]
    assert np.median(gaps) < 0.05 and np.mean(gaps) < 0.1


def test_token_budget_batches_stay_within_it_and_keep_their_count_every_epoch():
    sampler = LengthGroupedSampler(LENGTHS, 8, seed=3, max_tokens=2048, pad_to_multiple_of=64, max_length=512)
    counts = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        counts.append(len(batches))
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
        widths = [padded_length(int(LENGTHS[b].max()), 64, 512) for b in batches]
        assert all(len(b) * width <= 2048 for b, width in zip(batches, widths, strict=True))
        # Short reviews come in large batches, long ones in small.
        assert max(map(len, batches)) >= 16 and min(map(len, batches)) == 4
    assert counts == [len(sampler)] * 3  # what the scheduler was sized for


def test_a_restored_loader_goes_on_with_the_batches_not_yet_seen():
    def loader():
        sampler = LengthGroupedSampler(LENGTHS, 8, seed=3)
        sampler.set_epoch(2)
        return StatefulDataLoader(np.arange(len(LENGTHS)), batch_size=None, sampler=sampler)

    whole = [b.tolist() for b in loader()]
    interrupted = loader()
    iterator = iter(interrupted)
    seen = [next(iterator).tolist() for _ in range(5)]
    state = interrupted.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    assert seen + [b.tolist() for b in resumed] == whole


def test_accelerator_padding_makes_at_most_9_shapes_at_max_length_512(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = [{"input_ids": [2] + [7] * (n - 2) + [3], "attention_mask": [1] * n} for n in LENGTHS]
    data = Dataset.from_list(rows)
    collate = CollateWithStrings(tokenizer, max_length=512, pad_to_multiple_of=ACCELERATOR_PAD_MULTIPLE)
    sampler = LengthGroupedSampler(
        LENGTHS, 8, seed=0, pad_to_multiple_of=ACCELERATOR_PAD_MULTIPLE, max_length=512
    )
    shapes = {
        tuple(batch["input_ids"].shape)
        for batch in StatefulDataLoader(data, batch_size=None, sampler=sampler, collate_fn=collate)
    }
    assert len(shapes) <= 9 and all(width % 64 == 0 or width == 512 for _, width in shapes)
    exact = CollateWithStrings(tokenizer, max_length=512)
    exact_shapes = {
        tuple(b["input_ids"].shape)
        for b in StatefulDataLoader(data, batch_size=None, sampler=sampler, collate_fn=exact)
    }
    assert len(exact_shapes) > 100  # dynamic padding: almost a shape per batch


def test_too_few_examples_for_one_batch_per_process_is_a_clear_error():
    with pytest.raises(UserError, match=r"lower data\.batch_size"):
        LengthGroupedSampler(LENGTHS[:10], batch_size=8, num_replicas=2)
    with pytest.raises(UserError, match=r"lower data\.max_tokens"):
        LengthGroupedSampler(LENGTHS[:3], batch_size=8, num_replicas=2, max_tokens=4096)


def epoch_order(loader, epoch: int) -> list[int]:
    """The training order of `epoch`, told its epoch as Lightning tells the loader's sampler."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    return list(loader.sampler)


@pytest.mark.parametrize("task", ["classifier, random batches", "masked LM"])
def test_a_new_loader_trains_epoch_k_in_the_order_of_epoch_k(tiny_model, hub_dataset, text_dataset, task):
    """A run resumed at an epoch's end builds a new loader: its epoch 2 must be the uninterrupted run's epoch
    2 (a DataLoader's own shuffle gives a new loader epoch 0's order, one permutation per iter())."""
    if task == "masked LM":
        dm = IMDbPretrainingDataModule(text_dataset, tiny_model, max_length=32, val_reviews=20)
    else:
        dm = IMDbDataModule(hub_dataset, tiny_model, max_length=32, group_by_length=False)
    dm.setup("fit")
    uninterrupted = dm.train_dataloader()
    orders = [epoch_order(uninterrupted, epoch) for epoch in range(3)]
    assert len({tuple(order) for order in orders}) == 3, "epochs should differ"
    assert epoch_order(dm.train_dataloader(), 2) == orders[2]
