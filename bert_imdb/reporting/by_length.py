"""Accuracy by review length: where the model fails. Long reviews lose part of their text to truncation, so
the accuracy is counted per bucket of a review's length in tokens, and per bucket of the tokens truncation
dropped from it.

torchmetrics has no accuracy per group of a second variable that also reports the group sizes, hence the
metric below: two counters per bucket, summed over processes like any torchmetrics state, updated on the
device without reading anything back.
"""

import torch
from torchmetrics import Metric

# A review's tokens, special tokens included: upper edges of the buckets (the last bucket is open).
TOKEN_EDGES = (128, 256, 512, 1024)
# Tokens truncation dropped from a review: 0 (the whole review seen), then upper edges.
DROPPED_EDGES = (0, 128, 512)


def bucket_names(edges: tuple[int, ...]) -> list[str]:
    """ "0", "1-128", ... "513+": the inclusive range of each bucket of `edges`."""
    names, low = [], 1 if edges[0] > 0 else 0
    for edge in edges:
        names.append(str(edge) if low == edge else f"{low}-{edge}")
        low = edge + 1
    return [*names, f"{low}+"]


class AccuracyByBucket(Metric):
    """Reviews and correct predictions per bucket of an integer value (bucket i holds the values in
    (edges[i-1], edges[i]]; the last, those above edges[-1])."""

    full_state_update = False

    def __init__(self, edges: tuple[int, ...]):
        super().__init__()
        self.names = bucket_names(edges)
        self.register_buffer("edges", torch.tensor(edges), persistent=False)
        self.add_state("reviews", torch.zeros(len(self.names), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("correct", torch.zeros(len(self.names), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor, correct: torch.Tensor) -> None:
        which = torch.bucketize(values, self.edges.to(values.device))
        self.reviews.index_add_(0, which, torch.ones_like(which))
        self.correct.index_add_(0, which, correct.long())

    def compute(self) -> dict[str, tuple[int, float]]:
        """Per bucket name: (reviews, accuracy), nan where no review fell."""
        reviews, correct = self.reviews.tolist(), self.correct.tolist()
        return {
            name: (n, c / n if n else float("nan"))
            for name, n, c in zip(self.names, reviews, correct, strict=True)
        }


def length_table(by_tokens: dict, by_dropped: dict) -> str:
    """Both bucketings as one Markdown table."""
    lines = ["| bucket | reviews | accuracy |", "|---|---:|---:|"]
    for title, buckets in (("review tokens", by_tokens), ("tokens dropped by truncation", by_dropped)):
        for name, (reviews, accuracy) in buckets.items():
            shown = f"{accuracy:.4f}" if reviews else "-"
            lines.append(f"| {title} {name} | {reviews} | {shown} |")
    return "\n".join(lines)
