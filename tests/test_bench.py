import json
import os
from pathlib import Path

from bert_imdb.bench import main

TINY = ["--train-samples", "32", "--test-samples", "16", "--epochs", "2", "--max-length", "64"]


def test_bench_runs_both_recipes_on_the_same_reviews_and_reports_them(tiny_model, hub_dataset, workdir):
    results = workdir / "results"
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    cached_before = set(cache.rglob("*"))
    main([*TINY, "--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)])
    # Each run loaded and tokenized into an empty cache of its own, not into this session's.
    assert set(cache.rglob("*")) == cached_before
    [report_file] = results.glob("*.json")
    report = json.loads(report_file.read_text())
    peer, ours = report["runs"]["peer"], report["runs"]["bert_imdb"]
    # Same reviews, same epochs: the same real tokens, whatever the padding and truncation.
    assert peer["real_tokens"] == ours["real_tokens"] > 0
    assert peer["padded_tokens"] == 32 * 64 * 2  # every review padded to max length, twice
    assert ours["real_tokens"] <= ours["padded_tokens"] < peer["padded_tokens"]
    for run in (peer, ours):
        assert 0 < run["train_seconds"] < run["wall_seconds"]
        assert 0 <= run["test_acc"] <= 1
        assert run["flops"] > 0 and run["mfu"] > 0
        assert run["peak_rss_gb"] > 0
    assert len(peer["test_acc_per_epoch"]) == 2
    assert report["ratios"]["speedup"] == peer["wall_seconds"] / ours["wall_seconds"]
    assert report["matmul_peak_gflops"]["fp32"] > 0
    table = report_file.with_suffix(".md").read_text()
    assert "| test accuracy |" in table and f"{report['ratios']['speedup']:.2f}x" in table


def test_bench_levers_mode_measures_defaults_and_the_levers_named(tiny_model, hub_dataset, workdir):
    results = workdir / "results"
    args = [*TINY, "--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)]
    main([*args, "--levers", "random batches", "fp32", "--lever-steps", "3"])
    [report_file] = results.glob("*-levers.json")
    levers = json.loads(report_file.read_text())["levers"]
    assert list(levers) == ["defaults", "random batches", "fp32"]
    for run in levers.values():
        assert run["real_tokens"] > 0 and run["eval_reviews"] == 16  # one validation, all of it
    assert levers["fp32"]["precision"] == "32-true"
    # The same reviews in other batches: random batches pad more.
    assert levers["random batches"]["padding_fraction"] > levers["defaults"]["padding_fraction"]
    assert "| random batches |" in report_file.with_suffix(".md").read_text()
