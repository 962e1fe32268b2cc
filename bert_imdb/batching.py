"""Batches of reviews of similar length, so little of each batch is padding.

IMDb reviews run from a dozen to over 2,000 tokens: a random batch of 8 usually holds one long review
and pads the other seven to it. Grouping by length removes most of that padding (measured in the README).
"""

import math

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


class LengthGroupedSampler(StatefulDistributedSampler):
    """Shuffled batches of similar length, dealt out to the processes of a distributed run.

    Hand-written because neither transformers' LengthGroupedSampler nor torch's samplers give each
    process the same number of batches with one short batch at most (at the very end). Subclassing
    torchdata's StatefulDistributedSampler gives three things: Lightning does not wrap it in a second
    DistributedSampler, calls `set_epoch` on it, and the StatefulDataLoader saves how far through an epoch
    it is, so a resumed run gets the batches it had not seen.

    Each epoch: shuffle the examples (seeded by seed + epoch), sort each window of `WINDOW_BATCHES`
    batches by length, cut it into batches, shuffle the batches, then give process r the batches r, r+W,
    r+2W... The one short batch (when the count does not divide) goes last; full batches are repeated to
    give every process the same number, as DistributedSampler repeats examples.
    """

    def __init__(
        self, lengths: np.ndarray, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0
    ):
        if len(lengths) < batch_size * num_replicas:
            raise UserError(
                f"{len(lengths)} training examples do not fill one batch of {batch_size} on each of "
                f"{num_replicas} process(es): lower data.batch_size or train on more examples"
            )
        super().__init__(range(len(lengths)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.num_samples = sum(len(batch) for batch in self._my_batches())
        self.total_size = self.num_samples * num_replicas

    def _my_batches(self) -> list[np.ndarray]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        window = WINDOW_BATCHES * self.batch_size
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        short = batches.pop() if len(batches[-1]) < self.batch_size else None
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        count = len(batches) + (short is not None)  # at least num_replicas full batches: checked above
        batches += batches[: math.ceil(count / self.num_replicas) * self.num_replicas - count]
        if short is not None:
            batches.append(short)
        return batches[self.rank :: self.num_replicas]

    def __iter__(self):
        # As in StatefulDistributedSampler: skip what a restored state says was already handed out.
        self.yielded, self.next_yielded = self.next_yielded or 0, None
        indices = np.concatenate(self._my_batches()).tolist()
        for index in indices[self.yielded :]:
            self.yielded += 1
            yield index


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
