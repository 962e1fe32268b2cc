"""WeightedMean: torchmetrics' MeanMetric with weights and without its per-update NaN check.

Read from torchmetrics 1.9.0 (`torchmetrics/aggregation.py`, `BaseAggregator._cast_and_nan_check_input`):
MeanMetric checks every update for NaN (`isnan(...).any()`, which waits for the device), unless
`nan_strategy="disable"`, and then it replaces the weights with ones, so a weighted mean silently becomes
the mean of the values. When to drop: tests/workarounds/test_weighted_mean.py fails once
`MeanMetric(nan_strategy="disable")` keeps its weights.
"""

import torch
from torchmetrics import Metric


class WeightedMean(Metric):
    """The weighted mean of the values, summed over processes; updates never read the device."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value: torch.Tensor, weight: torch.Tensor) -> None:
        value = value.detach().double()
        weight = torch.broadcast_to(weight.detach().double(), value.shape)
        self.total += (value * weight).sum()
        self.weight += weight.sum()

    def compute(self) -> torch.Tensor:
        return (self.total / self.weight).float()
