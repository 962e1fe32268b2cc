"""What an evaluation shows in TensorBoard beyond its scalars: the confusion matrix and precision-recall
figures, the PR CURVES tab, and the reviews the model got most confidently wrong, over all processes."""

import heapq

import torch

from bert_imdb.data.imdb import LABEL_NAMES
from bert_imdb.distributed import TimedGroup

CONFIDENTLY_WRONG_SHOWN = 10


class ConfidentlyWrong:
    """Collects, batch by batch, how confident the model was in a wrong label; the device is read once, at
    the end of the epoch (`top`), never per batch."""

    def __init__(self, shown: int = CONFIDENTLY_WRONG_SHOWN):
        self.shown = shown
        self.reset()

    def reset(self) -> None:
        self._confidence: list[torch.Tensor] = []  # per batch, on the device: -1 where the model was right
        self._labels: list[torch.Tensor] = []
        self._texts: list[str] = []

    def update(self, pos: torch.Tensor, labels: torch.Tensor, texts: list[str]) -> None:
        predicted = (pos >= 0.5).long()
        confidence = torch.where(predicted == 1, pos, 1 - pos)
        self._confidence.append(torch.where(predicted != labels, confidence, -1.0).detach())
        self._labels.append(labels.detach())
        self._texts += texts

    def top(self, group: TimedGroup | None = None) -> list[tuple[float, int, str]]:
        """(confidence, true label, text) of the most confidently wrong reviews of all processes (gathered
        through `group` where there are several)."""
        mine = []
        if self._confidence:
            confidence = torch.cat(self._confidence)
            values, where = confidence.topk(min(self.shown, len(confidence)))
            labels = torch.cat(self._labels)[where]
            rows = zip(values.tolist(), labels.tolist(), where.tolist(), strict=True)
            mine = [(value, label, self._texts[i]) for value, label, i in rows if value >= 0]
        if group is not None:
            mine = [row for rows in group.gather(mine, "the end of the evaluation") for row in rows]
        return heapq.nlargest(self.shown, mine, key=lambda row: row[0])


def confidently_wrong_table(rows: list[tuple[float, int, str]]) -> str:
    lines = [
        f"| {conf:.3f} | {LABEL_NAMES[label]} | {text[:600].replace('|', '/').replace(chr(10), ' ')} |"
        for conf, label, text in rows
    ]
    return "| confidence in the wrong label | true label | review |\n|---|---|---|\n" + "\n".join(lines)


def add_pr_curve(writer, tag: str, counts: torch.Tensor, step: int) -> None:
    """The precision-recall curve in TensorBoard's PR CURVES tab, where a reader can move along the
    thresholds: from the metric's binned counts, so it needs no second pass over the predictions."""
    tn, fp, fn, tp = (counts[:, i, j].double() for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
    # Where nothing is predicted positive, TensorBoard's own add_pr_curve divides by 1e-7 too.
    precision, recall = tp / (tp + fp).clamp(min=1e-7), tp / (tp + fn).clamp(min=1e-7)
    writer.add_pr_curve_raw(
        tag, tp, fp, tn, fn, precision, recall, global_step=step, num_thresholds=len(counts)
    )
