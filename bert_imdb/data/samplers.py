"""Batches of reviews of similar length, so little of each batch is padding.

IMDb reviews run from a dozen to over 2,000 tokens: a random batch of 8 usually holds one long review
and pads the other seven to it. Grouping by length removes most of that padding (benchmarks/results/README.md).
"""

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch.utils.data import DistributedSampler
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

from bert_imdb.errors import UserError

# Reviews are shuffled, then sorted by length within windows of this many batches: larger windows pad
# less, smaller ones keep batches more random. 50 is what Hugging Face's LengthGroupedSampler uses.
WINDOW_BATCHES = 50


def token_lengths(dataset: Dataset) -> np.ndarray:
    """Tokens per example, read from Arrow without converting the token lists to Python."""
    return pc.list_value_length(dataset.with_format("arrow")["input_ids"]).to_numpy()


def padded_length(length: int, multiple: int | None, max_length: int) -> int:
    """The width a batch whose longest review has `length` tokens is padded to: a multiple of `multiple`
    (none: `length` itself), at most `max_length`. CollateWithStrings pads so; token-budget batches size
    by it."""
    return min(-(-length // multiple) * multiple, max_length) if multiple else length


class LengthGroupedSampler(StatefulDistributedSampler):
    """Shuffled batches of similar length, dealt out to the processes of a distributed run. It yields whole
    batches (lists of example indices): the DataLoader takes it as its sampler with `batch_size=None`.

    Hand-written because neither transformers' LengthGroupedSampler nor torch's samplers give each
    process the same number of batches, token-budget batches, or processes that hold batches of like
    length at the same step. Subclassing torchdata's StatefulDistributedSampler gives three things:
    Lightning does not wrap it in a second DistributedSampler, calls `set_epoch` on it, and the
    StatefulDataLoader saves how many batches of the epoch it has handed out, so a resumed run gets the
    batches it had not seen.

    Each epoch (seeded by seed + epoch), with W processes:

    - `batch_size` reviews a batch: shuffle the reviews, sort each window of `WINDOW_BATCHES` x W batches by
      length, and cut it into batches; only the very last batch may be short.
    - `max_tokens` a batch (`max_tokens` set): shuffle, then sort all reviews by length (reviews of equal
      length in a new order each epoch), and cut batches of as many reviews as fit in `max_tokens` padded
      tokens, so short reviews come in large batches. The lengths, and so the batches' sizes and number,
      are the same every epoch, which keeps the scheduler's step count right.

    Then consecutive batches, which hold reviews of like length, are grouped W at a time into steps (the
    last batches repeated, as DistributedSampler repeats examples, so that every process has as many), the
    steps are shuffled, and process r takes the r-th batch of every step: at each step all processes
    train on batches of about the same length, and none waits long for another.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        max_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        max_length: int | None = None,
    ):
        if max_tokens is None and len(lengths) < batch_size * num_replicas:
            raise UserError(
                f"{len(lengths)} training examples do not fill one batch of {batch_size} on each of "
                f"{num_replicas} process(es): lower data.batch_size or train on more examples"
            )
        super().__init__(range(len(lengths)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = np.asarray(lengths)
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.multiple, self.max_length = pad_to_multiple_of, max_length or int(self.lengths.max())
        if max_tokens is not None and len(self._batches(torch.Generator().manual_seed(seed))) < num_replicas:
            raise UserError(
                f"{len(lengths)} training examples do not make a batch of data.max_tokens={max_tokens} for each "
                f"of {num_replicas} process(es): lower data.max_tokens or train on more examples"
            )
        self.steps_per_epoch = len(self._steps())

    def _batches(self, generator: torch.Generator) -> list[np.ndarray]:
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        if self.max_tokens is not None:
            order = order[np.argsort(-self.lengths[order], kind="stable")]
            batches, start = [], 0
            while start < len(order):
                width = padded_length(int(self.lengths[order[start]]), self.multiple, self.max_length)
                size = max(self.max_tokens // width, 1)
                batches.append(order[start : start + size])
                start += size
            return batches
        window = WINDOW_BATCHES * self.num_replicas * self.batch_size
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return batches

    def _steps(self) -> list[list[np.ndarray]]:
        """This epoch's steps: each the W processes' batches, of like length."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        batches = self._batches(generator)
        short = batches.pop() if self.max_tokens is None and len(batches[-1]) < self.batch_size else None
        missing = -(len(batches) + (short is not None)) % self.num_replicas
        batches += [batches[-1 - i % len(batches)] for i in range(missing)]  # the last, shortest ones again
        if short is not None:
            batches.append(short)
        steps = [batches[i : i + self.num_replicas] for i in range(0, len(batches), self.num_replicas)]
        return [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self):
        # As in StatefulDistributedSampler: skip what a restored state says was already handed out.
        self.yielded, self.next_yielded = self.next_yielded or 0, None
        for step in self._steps()[self.yielded :]:
            self.yielded += 1
            yield step[self.rank].tolist()


class EvaluationSampler(DistributedSampler):
    """Validation and test examples dealt out to processes without repeats: rank r takes examples r, r + W,
    r + 2W, ... (of a set sorted longest first, so every rank gets a like share of long reviews).

    Lightning's own DistributedSampler repeats examples until every process has as many, which counts
    them twice in the metrics. Here processes may hold different numbers of batches, which is safe because
    nothing logged per evaluation batch talks to the other processes: torchmetrics syncs once, at the end.
    A process with no example at all still reports one (empty) batch, because Lightning skips a loop of
    length 0, and the process would then miss that end-of-epoch sync, where the others would wait for it.
    """

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.indices = range(rank, size, num_replicas)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return max(len(self.indices), 1)


def shuffled_sampler(dataset, trainer, seed: int) -> StatefulDistributedSampler:
    """A training sampler of random batches whose epoch k is always the same permutation: drawn from
    (seed, k), as DistributedSampler draws it, on one process as on several.

    A DataLoader's own shuffle draws every epoch from one generator seeded when the loader is built, one
    permutation per epoch: a run resumed at an epoch's end, whose loader is new, would train epoch k in
    epoch 0's order. Stateful, so a mid-epoch resume goes on from its position; a DistributedSampler, so
    Lightning tells it its epoch and does not wrap it in another.
    """
    return StatefulDistributedSampler(
        dataset,
        num_replicas=trainer.world_size if trainer else 1,
        rank=trainer.global_rank if trainer else 0,
        shuffle=True,
        seed=seed,
    )
