import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_accuracy, binary_f1_score

from bert_imdb.reporting.intervals import score_intervals

# Shares of the confusion matrix's cells (tp, fp, fn, tn) of a model of about 88% accuracy.
CELLS = np.array([0.45, 0.05, 0.07, 0.43])
TRUE_SCORES = {"acc": 0.88, "f1": 2 * 0.45 / (2 * 0.45 + 0.05 + 0.07)}


def reviews_from_cells(counts) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true labels of reviews in the cells tp, fp, fn, tn, `counts` of each, shuffled."""
    predicted = torch.tensor([1, 1, 0, 0]).repeat_interleave(torch.as_tensor(counts))
    labels = torch.tensor([1, 0, 1, 0]).repeat_interleave(torch.as_tensor(counts))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    return predicted[order], labels[order]


def test_the_intervals_are_those_of_resampling_the_reviews_themselves():
    """The reference: the plain bootstrap, drawing review indices and scoring with torchmetrics."""
    predicted, labels = reviews_from_cells([900, 100, 140, 860])
    generator = torch.Generator().manual_seed(1)
    resampled = {"acc": [], "f1": []}
    for _ in range(4000):
        i = torch.randint(len(labels), (len(labels),), generator=generator)
        resampled["acc"].append(float(binary_accuracy(predicted[i], labels[i])))
        resampled["f1"].append(float(binary_f1_score(predicted[i], labels[i])))
    found = score_intervals(predicted, labels)
    for name, values in resampled.items():
        expected = np.percentile(values, [2.5, 97.5])
        # Both are Monte Carlo estimates of the same percentiles: they agree to a few thousandths.
        assert found[name] == pytest.approx(tuple(expected), abs=0.003), name


def test_the_intervals_hold_the_true_score_about_95_times_in_100():
    rng = np.random.default_rng(7)
    held = {"acc": 0, "f1": 0}
    samples = 1000
    for _ in range(samples):
        predicted, labels = reviews_from_cells(rng.multinomial(400, CELLS))
        for name, (low, high) in score_intervals(predicted, labels).items():
            held[name] += low <= TRUE_SCORES[name] <= high
    for name, count in held.items():
        # 95% of 1000 is 950, with a binomial standard deviation of about 7 (a 90% interval: 900, 9).
        assert 925 <= count <= 975, (name, count)


def test_more_reviews_narrow_the_interval_as_one_over_their_square_root():
    few = score_intervals(*reviews_from_cells((CELLS * 400).astype(int)))["acc"]
    many = score_intervals(*reviews_from_cells((CELLS * 40_000).astype(int)))["acc"]
    assert (few[1] - few[0]) / (many[1] - many[0]) == pytest.approx(10, rel=0.15)


def test_a_rerun_reports_the_same_interval_and_edge_cases_stay_defined():
    predicted, labels = reviews_from_cells([30, 5, 8, 57])
    assert score_intervals(predicted, labels) == score_intervals(predicted, labels)
    perfect = score_intervals(torch.tensor([1, 0] * 25), torch.tensor([1, 0] * 25))
    assert perfect == {"acc": (1.0, 1.0), "f1": (1.0, 1.0)}
    # No positive review and none predicted: F1 is 0, as torchmetrics counts it.
    assert score_intervals(torch.zeros(5), torch.zeros(5))["f1"] == (0.0, 0.0)
    assert all(np.isnan(v) for pair in score_intervals(torch.zeros(0), torch.zeros(0)).values() for v in pair)
