import numpy as np
import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from bert_imdb.batching import LengthGroupedSampler
from bert_imdb.errors import UserError

# Long-tailed like IMDb: most reviews short, a few very long.
LENGTHS = np.random.default_rng(0).lognormal(5.3, 0.7, size=1003).astype(int).clip(10, 512)


def batches(sampler: LengthGroupedSampler, batch_size: int) -> list[list[int]]:
    indices = list(sampler)
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def padded_fraction(batch_list: list[list[int]]) -> float:
    padded = sum(len(b) * LENGTHS[b].max() for b in batch_list)
    return 1 - sum(LENGTHS[b].sum() for b in batch_list) / padded


def test_grouped_batches_cover_every_example_once_and_pad_far_less_than_random():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=8, seed=1)
    grouped = batches(sampler, 8)
    assert sorted(i for b in grouped for i in b) == list(range(len(LENGTHS)))
    assert len(sampler) == len(LENGTHS)
    # Only the very last batch is short (1003 = 125 x 8 + 3).
    assert [len(b) for b in grouped] == [8] * 125 + [3]
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
def test_each_process_gets_distinct_batches_and_the_same_number(world_size):
    ranks = [
        LengthGroupedSampler(LENGTHS, 8, num_replicas=world_size, rank=r, seed=1) for r in range(world_size)
    ]
    per_rank = [batches(sampler, 8) for sampler in ranks]
    counts = {len(b) for b in per_rank}
    assert counts == {-(-126 // world_size)}, counts
    assert [len(sampler) for sampler in ranks] == [sum(map(len, b)) for b in per_rank]
    seen = [i for b in per_rank for batch in b for i in batch]
    assert set(seen) == set(range(len(LENGTHS)))
    # Repeats only to even out the batch count: fewer than one batch per process.
    assert len(seen) - len(LENGTHS) < 8 * world_size
    # The short batch comes last on its process, so chunks of 8 are the batches that were made.
    assert all(len(batch) == 8 for b in per_rank for batch in b[:-1])


def test_a_restored_loader_goes_on_with_the_batches_not_yet_seen():
    def loader():
        sampler = LengthGroupedSampler(LENGTHS, 8, seed=3)
        sampler.set_epoch(2)
        return StatefulDataLoader(list(range(len(LENGTHS))), batch_size=8, sampler=sampler)

    whole = [b.tolist() for b in loader()]
    interrupted = loader()
    iterator = iter(interrupted)
    seen = [next(iterator).tolist() for _ in range(5)]
    state = interrupted.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    assert seen + [b.tolist() for b in resumed] == whole


def test_too_few_examples_for_one_batch_per_process_is_a_clear_error():
    with pytest.raises(UserError, match=r"lower data\.batch_size"):
        LengthGroupedSampler(LENGTHS[:10], batch_size=8, num_replicas=2)
