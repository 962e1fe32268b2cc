import pytest
import torch
from torchmetrics import MeanMetric

from bert_imdb.workarounds.weighted_mean import WeightedMean

VALUES, WEIGHTS = torch.tensor([1.0, 4.0]), torch.tensor([3.0, 1.0])


def test_torchmetrics_still_drops_the_weights_without_its_nan_check():
    # When this fails, MeanMetric(nan_strategy="disable") keeps its weights: use it instead of WeightedMean.
    metric = MeanMetric(nan_strategy="disable")
    metric.update(VALUES, weight=WEIGHTS)
    assert float(metric.compute()) == pytest.approx(2.5)  # the plain mean; weighted it is 1.75


def test_weighted_mean_weighs_and_accumulates_over_updates():
    metric = WeightedMean()
    metric.update(VALUES, WEIGHTS)
    metric.update(torch.tensor(2.0), torch.tensor(4.0))
    assert float(metric.compute()) == pytest.approx((3 + 4 + 8) / 8)
