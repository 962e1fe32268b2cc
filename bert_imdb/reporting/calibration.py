"""Calibrated probabilities: temperature scaling (Guo et al. 2017), fitted on the validation reviews, and the
expected calibration error and reliability diagram that show what it changed.

The classifier's positive probability is softmax(logits / T)[pos] = sigmoid(margin / T), with margin the
difference of its two logits: one number T, fitted by minimising the validation reviews' negative
log-likelihood, leaves every predicted label (and so the accuracy) as it was and moves the probabilities
towards how often they come true. torchmetrics has the calibration error but neither the fit nor the
diagram's bins, hence the code.
"""

import torch
from torch.nn.functional import binary_cross_entropy_with_logits
from torchmetrics.functional.classification import binary_calibration_error

# Equal-width bins of the positive probability, as torchmetrics' calibration error counts them.
CALIBRATION_BINS = 10


# The temperatures a fit may reach. Briefly trained models have margins near 0 on reviews of either label,
# and the likelihood then drives T towards infinity (18,285 to 198,663 seen): probabilities all near 0.5.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def fit_temperature(margins: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T in [MIN_TEMPERATURE, MAX_TEMPERATURE] minimising the mean negative log-likelihood
    of `labels` under sigmoid(margins / T): L-BFGS on log T (so T stays positive), in float64 on the CPU,
    then bounded. 1.0 when there is nothing to fit (no reviews, or margins all zero). Runs where Lightning
    calls it, inside evaluation's inference mode, which it leaves for the fit."""
    with torch.inference_mode(False), torch.enable_grad():
        # Copies made outside inference mode: autograd may not save inference tensors.
        return _fit_temperature(
            margins.detach().double().cpu().clone(), labels.detach().double().cpu().clone()
        )


def _fit_temperature(margins: torch.Tensor, labels: torch.Tensor) -> float:
    right = (margins > 0) == (labels > 0.5)
    # With every review right (or every one wrong) the likelihood has no finite optimum: T would run off
    # towards 0 (or infinity), a temperature that would mean nothing on new reviews.
    if not len(margins) or not margins.abs().max() > 0 or right.all() or not right.any():
        return 1.0
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = binary_cross_entropy_with_logits(margins / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(nll)
    return min(max(float(log_t.detach().exp()), MIN_TEMPERATURE), MAX_TEMPERATURE)


def nll(margins: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(binary_cross_entropy_with_logits(margins.double() / temperature, labels.double()))


def expected_calibration_error(pos: torch.Tensor, labels: torch.Tensor) -> float:
    """ECE of the positive probability: over equal-width bins, the review-weighted mean gap between the
    mean probability and the share of positive reviews (a review scored 0.9 should be positive 9 times
    in 10)."""
    if not len(pos):
        return float("nan")
    return float(binary_calibration_error(pos.float(), labels.long(), n_bins=CALIBRATION_BINS))


def reliability_bins(pos: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """Per bin of the positive probability: its range, how many reviews fell in it, their mean probability
    and the share of them that were positive. The data of a reliability diagram."""
    pos, labels = pos.detach().double().cpu(), labels.detach().double().cpu()
    which = (pos * CALIBRATION_BINS).long().clamp(max=CALIBRATION_BINS - 1)
    rows = []
    for b in range(CALIBRATION_BINS):
        inside = which == b
        count = int(inside.sum())
        rows.append(
            {
                "low": b / CALIBRATION_BINS,
                "high": (b + 1) / CALIBRATION_BINS,
                "reviews": count,
                "mean_probability": float(pos[inside].mean()) if count else float("nan"),
                "positive_share": float(labels[inside].mean()) if count else float("nan"),
            }
        )
    return rows


def calibration_report(margins: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
    """ECE, NLL and reliability bins of the same reviews before (T = 1) and after temperature scaling."""
    report = {"temperature": temperature}
    for name, t in (("uncalibrated", 1.0), ("calibrated", temperature)):
        pos = torch.sigmoid(margins.double().cpu() / t)
        report[name] = {
            "ece": expected_calibration_error(pos, labels.cpu()),
            "nll": nll(margins.cpu(), labels.cpu(), t) if len(margins) else float("nan"),
            "bins": reliability_bins(pos, labels),
        }
    return report


def fitted_calibration(margins: torch.Tensor, labels: torch.Tensor) -> tuple[dict, float | None]:
    """(calibration_report at the fitted temperature, None); or, where that temperature raises the ECE
    of the reviews it was fitted on (the likelihood's best is not always the calibration's), the report at
    temperature 1 and the temperature refused."""
    temperature = fit_temperature(margins, labels)
    report = calibration_report(margins, labels, temperature)
    if report["calibrated"]["ece"] > report["uncalibrated"]["ece"]:
        return calibration_report(margins, labels, 1.0), temperature
    return report, None


def reliability_figure(report: dict):
    """The reliability diagram of a calibration_report: the share of positive reviews against the mean
    positive probability per bin, before and after scaling, beside the diagonal of perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, style in (("uncalibrated", "o-"), ("calibrated", "s-")):
        bins = [b for b in report[name]["bins"] if b["reviews"]]
        label = f"{name} (ECE {report[name]['ece']:.4f})"
        if name == "calibrated":
            label = f"T = {report['temperature']:.3f} (ECE {report[name]['ece']:.4f})"
        axes.plot(
            [b["mean_probability"] for b in bins], [b["positive_share"] for b in bins], style, label=label
        )
    axes.set(xlabel="mean predicted P(pos)", ylabel="share of reviews positive", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure


def save_reliability_figure(report: dict, path) -> None:
    from matplotlib import pyplot as plt

    figure = reliability_figure(report)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def reliability_table(report: dict) -> str:
    """The reliability diagram's bins as a Markdown table, before and after scaling."""
    lines = [
        "| P(pos) bin | reviews | mean P(pos) | share positive | reviews (calibrated) | mean P(pos) "
        "(calibrated) | share positive (calibrated) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for before, after in zip(report["uncalibrated"]["bins"], report["calibrated"]["bins"], strict=True):
        cells = [f"{before['low']:.1f}-{before['high']:.1f}"]
        for row in (before, after):
            cells += [
                str(row["reviews"]),
                f"{row['mean_probability']:.3f}" if row["reviews"] else "-",
                f"{row['positive_share']:.3f}" if row["reviews"] else "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
