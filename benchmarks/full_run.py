"""The figures of a full run of benchmarks/full_run.sh, as the Markdown of benchmarks/results/README.md.

    python benchmarks/full_run.py best CONFIG         the best checkpoint of CONFIG's newest run, and its
                                                      max_length + 1 (what full_run.sh tests other truncations on)
    python benchmarks/full_run.py report OUT_DIR RUN  the figures: OUT_DIR of full_run.sh, RUN the run folder
                                                      (lightning_logs/<name>/version_<n>)

Everything is read back from what the run wrote (stages.tsv, MemoryByStage's JSON, TensorBoard's event
files, every one of the run folder's: a continued fit adds one), so the figures reproduce from the command.
"""

import argparse
import csv
import json
import statistics
import sys
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_imdb.reporting.by_length import DROPPED_EDGES, TOKEN_EDGES, bucket_names
from bert_imdb.resume.finding import newest_best_checkpoint
from bert_imdb.resume.loading import load_checkpoint


def best(config: str) -> str:
    """`<best checkpoint> <its max_length + 1>` of the newest run of `config` with a last.ckpt."""
    logger = yaml.safe_load(Path(config).read_text())["trainer"]["logger"]["init_args"]
    path = newest_best_checkpoint(Path(logger["save_dir"]) / logger["name"])
    if path:
        max_length = load_checkpoint(path, mmap=True)["datamodule_hyper_parameters"]["max_length"]
        return f"{path} {max_length + 1}"
    sys.exit(f"error: no run of {config} records a best checkpoint: run its fit first")


def scalars(run: Path) -> dict[str, list]:
    """Every scalar of every event file of the run, by tag, in the order they were written."""
    found: dict[str, list] = {}
    for path in sorted(run.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, []).extend(
                (path.name, e.step, e.wall_time, e.value) for e in events.Scalars(tag)
            )
    return found


def last(found: dict, tag: str, default=float("nan")) -> float:
    return found[tag][-1][3] if tag in found else default


def _stages(out: Path) -> str:
    rows = ["| stage | started (UTC) | wall | exit |", "|---|---|---:|---:|"]
    with (out / "stages.tsv").open() as f:
        for name, start, end, status in csv.reader(f, delimiter="\t"):
            seconds = int(end) - int(start)
            when = datetime.fromtimestamp(int(start), timezone.utc)
            rows.append(
                f"| {name} | {when:%Y-%m-%d %H:%M} | {seconds // 60} min {seconds % 60} s | {status} |"
            )
    return "\n".join(rows)


def _training(found: dict) -> str:
    """Seconds per step between logged steps within each process (an event file), and real tokens/s."""
    rows = [
        "| event file (one process) | steps logged | s/step between them | real tokens/s |",
        "|---|---|---:|---:|",
    ]
    by_file: dict[str, list] = {}
    for file, step, wall, _ in found.get("train/loss", []):
        by_file.setdefault(file, []).append((step, wall))
    tokens: dict[str, list] = {}
    for file, _, _, value in found.get("train/device/items_per_sec", []):
        tokens.setdefault(file, []).append(value)
    for file, logged in by_file.items():
        per_step = [(w1 - w0) / (s1 - s0) for (s0, w0), (s1, w1) in pairwise(logged)]
        rate = f"{statistics.median(per_step):.1f}" if per_step else "-"
        speed = f"{statistics.mean(tokens[file]):,.0f}" if file in tokens else "-"
        rows.append(f"| {file} | {', '.join(str(s) for s, _ in logged)} | {rate} | {speed} |")
    return "\n".join(rows)


def _memory(out: Path) -> str:
    rows = ["| file | stage | at step | peak RSS | heap held free |", "|---|---|---:|---:|---:|"]
    for path in sorted(out.glob("memory-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1])):
        for record in json.loads(path.read_text()):
            rows.append(
                f"| {path.name} | {record['stage']} | {record['step']} | {record['peak_rss_gb']:.2f} GB "
                f"| {record['heap_free_gb']:.2f} GB |"
            )
    return "\n".join(rows)


def _scores(found: dict, prefix: str) -> str:
    """`acc (95% CI low-high)`, F1 likewise, and the ECE before and after the temperature."""

    def score(name: str) -> str:
        low, high = last(found, f"{prefix}{name}_ci_low"), last(found, f"{prefix}{name}_ci_high")
        return f"{last(found, prefix + name):.4f} (95% CI {low:.4f}-{high:.4f})"

    return (
        f"accuracy {score('acc')}, F1 {score('f1')}, ECE {last(found, prefix + 'ece'):.4f} before and "
        f"{last(found, prefix + 'ece_calibrated'):.4f} after the temperature"
    )


def _buckets(found: dict, records: str) -> dict[str, tuple[int, float]]:
    """`<records>_by_length/` of the newest test so named: bucket -> (reviews, accuracy)."""
    out = {}
    for kind, edges in (("tokens", TOKEN_EDGES), ("dropped", DROPPED_EDGES)):
        for name in bucket_names(edges):
            reviews = int(last(found, f"{records}_by_length/reviews_{kind}_{name}", 0))
            out[f"{kind} {name}"] = (reviews, last(found, f"{records}_by_length/acc_{kind}_{name}"))
    return out


def _variants(found: dict) -> list[str]:
    return sorted(
        {
            tag.split("/")[0]
            for tag in found
            if tag.startswith("test_") and "/" in tag and "_by_length" not in tag
        }
    )


def report(out: Path, run: Path) -> str:
    found = scalars(run)
    whole = _buckets(found, "test")
    total = sum(n for bucket, (n, _) in whole.items() if bucket.startswith("tokens"))
    variants = _variants(found)
    header = ["bucket", "test reviews", "accuracy", *(f"{v}: reviews, accuracy" for v in variants)]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    per_variant = {v: _buckets(found, v) for v in variants}
    for bucket, (reviews, accuracy) in whole.items():
        cells = [bucket.replace("tokens", "review tokens").replace("dropped", "tokens dropped"), str(reviews)]
        cells.append(f"{accuracy:.4f}" if reviews else "-")
        for v in variants:
            n, a = per_variant[v][bucket]
            cells.append(f"{n}, {a:.4f}" if n else "-")
        rows.append("| " + " | ".join(cells) + " |")
    # The reviews another truncation changes are those truncation cut (tokens dropped > 0); the others are the
    # same tokens under every truncation, so their correct predictions carry over from the test of them all.
    kept_n, kept_acc = whole["dropped 0"]
    cut = [
        (n, a)
        for bucket, (n, a) in whole.items()
        if bucket.startswith("dropped") and bucket != "dropped 0" and n
    ]
    cut_n = sum(n for n, _ in cut)
    cut_acc = sum(n * a for n, a in cut) / cut_n if cut_n else float("nan")
    derived = [f"- the run's own truncation: {cut_n} reviews cut, accuracy on them {cut_acc:.4f}"]
    for v in variants:
        accuracy = last(found, f"{v}/acc")
        n = sum(count for bucket, (count, _) in per_variant[v].items() if bucket.startswith("tokens"))
        note = "" if n == cut_n else f" (not the {cut_n} reviews cut: not comparable)"
        whole_split = (kept_n * kept_acc + n * accuracy) / total if total else float("nan")
        derived.append(
            f"- `{v}`: {n} reviews, accuracy on them {accuracy:.4f}{note}; on the whole test split "
            f"({kept_n} reviews not cut, as tested) {whole_split:.4f}"
        )
    return "\n\n".join(
        [
            "Stages (stages.tsv):\n\n" + _stages(out),
            "Training (TensorBoard's wall times of `train/loss`; `train/device/items_per_sec`):\n\n"
            + _training(found),
            "Peak resident memory (MemoryByStage):\n\n" + _memory(out),
            f"Validation (the last, of the weights tested): {_scores(found, 'val/')}, temperature "
            f"{last(found, 'val/temperature'):.4f}.",
            f"Test of all {total} test reviews: {_scores(found, 'hp/test_')}.",
            "Accuracy by length:\n\n" + "\n".join(rows),
            "Other truncations, on the reviews truncation cuts:\n\n" + "\n".join(derived),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("best").add_argument("config")
    reading = commands.add_parser("report")
    reading.add_argument("out", type=Path)
    reading.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    print(best(args.config) if args.command == "best" else report(args.out, args.run))


if __name__ == "__main__":
    main()
