import random

import torch

from bert_imdb.reporting.by_length import DROPPED_EDGES, TOKEN_EDGES, AccuracyByBucket, bucket_names


def test_bucket_names_are_the_inclusive_ranges():
    assert bucket_names(TOKEN_EDGES) == ["1-128", "129-256", "257-512", "513-1024", "1025+"]
    assert bucket_names(DROPPED_EDGES) == ["0", "1-128", "129-512", "513+"]


def reference(values: list[int], correct: list[bool], edges: tuple[int, ...]) -> dict:
    """Counted by hand from the ranges the names promise."""
    counts = {}
    for name in bucket_names(edges):
        low, _, high = name.rstrip("+").partition("-")
        low, high = int(low), int(high or (low if not name.endswith("+") else 10**9))
        inside = [c for v, c in zip(values, correct, strict=True) if low <= v <= high]
        counts[name] = (len(inside), sum(inside) / len(inside) if inside else None)
    return counts


def test_accuracy_by_bucket_matches_a_count_by_hand_over_batches():
    rng = random.Random(0)
    for edges in (TOKEN_EDGES, DROPPED_EDGES):
        metric = AccuracyByBucket(edges)
        every_value, every_correct = [], []
        for _ in range(5):
            # Values on and around every edge, and far above the last.
            lowest = 0 if edges[0] == 0 else 1  # a review has tokens; truncation may drop none
            values = [
                rng.choice([lowest, lowest + 1, *edges, *(e + 1 for e in edges), rng.randint(lowest, 3000)])
                for _ in range(40)
            ]
            correct = [rng.random() < 0.7 for _ in values]
            metric.update(torch.tensor(values), torch.tensor(correct))
            every_value += values
            every_correct += correct
        got = metric.compute()
        for name, (reviews, accuracy) in reference(every_value, every_correct, edges).items():
            assert got[name][0] == reviews, name
            if reviews:
                assert abs(got[name][1] - accuracy) < 1e-9, name
