import pytest
import torch

from bert_imdb.reporting.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    fitted_calibration,
)


def reviews(n: int, scale: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Margins of a model whose true log-odds are z, reported as scale * z, and labels drawn from z."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=generator, dtype=torch.float64) * 2
    labels = torch.bernoulli(torch.sigmoid(z), generator=generator)
    return scale * z, labels


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_the_temperature_undoes_over_and_under_confidence(scale):
    margins, labels = reviews(20_000, scale)
    temperature = fit_temperature(margins, labels)
    assert temperature == pytest.approx(scale, rel=0.08)
    report = calibration_report(margins, labels, temperature)
    assert report["calibrated"]["ece"] <= report["uncalibrated"]["ece"] / 2
    assert report["calibrated"]["nll"] < report["uncalibrated"]["nll"]
    # The predicted labels, and so the accuracy, stay as they were.
    assert torch.equal(margins / temperature > 0, margins > 0)


def test_a_calibrated_model_keeps_temperature_one():
    margins, labels = reviews(20_000, 1.0, seed=1)
    assert fit_temperature(margins, labels) == pytest.approx(1.0, abs=0.08)
    pos = torch.sigmoid(margins)
    assert expected_calibration_error(pos, labels) < 0.02


@pytest.mark.parametrize(
    "margins, labels",
    [
        ([], []),  # no reviews
        ([0.0, 0.0], [0, 1]),  # nothing to scale
        ([2.0, -3.0, 5.0], [1, 0, 1]),  # all right: no finite optimum, T would run off to 0
    ],
    ids=["empty", "all-zero", "separable"],
)
def test_nothing_to_fit_keeps_the_models_own_probabilities(margins, labels):
    assert fit_temperature(torch.tensor(margins), torch.tensor(labels)) == 1.0


def test_fitting_works_inside_inference_mode_as_evaluation_calls_it():
    margins, labels = reviews(1_000, 2.0)
    with torch.inference_mode():
        margins, labels = margins.clone(), labels.clone()
        assert fit_temperature(margins, labels) == pytest.approx(2.0, rel=0.25)


def test_the_temperature_stays_within_its_bounds():
    # Margins that say nothing of the labels (a model trained a few steps): the likelihood drives T up
    # without end (18,285 to 198,663 seen).
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(2_000, generator=generator, dtype=torch.float64)
    labels = torch.bernoulli(torch.full((2_000,), 0.5, dtype=torch.float64), generator=generator)
    assert fit_temperature(noise, labels) == MAX_TEMPERATURE
    assert 0 < MIN_TEMPERATURE < 1 < MAX_TEMPERATURE


def test_a_temperature_that_raises_the_ece_is_refused():
    # 200 reviews where the likelihood's best temperature makes the ECE worse (found by drawing such sets:
    # seed 33, uncalibrated ECE 0.027, at the fitted T = 0.70 0.052).
    generator = torch.Generator().manual_seed(33)
    z = torch.randn(200, generator=generator, dtype=torch.float64)
    scale = float(torch.rand(1, generator=generator)) * 3
    labels = torch.bernoulli(
        torch.sigmoid(z * float(torch.rand(1, generator=generator)) * 2), generator=generator
    )
    margins = z * scale
    fitted = calibration_report(margins, labels, fit_temperature(margins, labels))
    assert fitted["calibrated"]["ece"] > fitted["uncalibrated"]["ece"]
    report, refused = fitted_calibration(margins, labels)
    assert refused == fit_temperature(margins, labels) and report["temperature"] == 1.0
    assert report["calibrated"]["ece"] == report["uncalibrated"]["ece"]
