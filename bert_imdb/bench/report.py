"""The benchmark's report: the machine it ran on, and its results as Markdown tables."""

import math
import os
import platform
from pathlib import Path

import lightning as L
import torch


def machine() -> dict:
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    import datasets
    import transformers

    info.update(torch=torch.__version__, lightning=L.__version__)
    info.update(transformers=transformers.__version__, datasets=datasets.__version__)
    return info


ROWS = [
    ("wall time to final test accuracy (s)", "wall_seconds", "{:,.0f}"),
    ("fit, in the process (s)", "fit_seconds", "{:,.0f}"),
    ("test, in the process (s)", "test_seconds", "{:,.0f}"),
    ("training time, validation excluded (s)", "train_seconds", "{:,.0f}"),
    ("training throughput (real tokens/s)", "real_tokens_per_second", "{:,.0f}"),
    ("padding share of tokens processed", "padding_fraction", "{:.1%}"),
    ("model FLOP/s on real tokens (G)", "model_flops_per_second", "{:.1f}"),
    ("MFU (of this run's dtype's matmul peak)", "mfu", "{:.1%}"),
    ("MFU (of the GPU's datasheet dense bf16 peak)", "mfu_datasheet", "{:.1%}"),
    ("peak memory, RSS (GB)", "peak_rss_gb", "{:.2f}"),
    ("peak GPU memory (GB)", "peak_gpu_gb", "{:.2f}"),
    ("test accuracy", "test_acc", "{:.3f}"),
    ("precision", "precision", "{}"),
]


def header(report: dict) -> list[str]:
    m, s = report["machine"], report["settings"]
    peak = report["matmul_peak_gflops"]["bf16"]
    bf16 = "no bf16 arithmetic" if math.isnan(peak) else f"{peak:,.0f} GFLOP/s bf16"
    return [
        f"Machine: {m.get('gpu', m['cpu'])}, {m['cpu_cores']} CPU cores; torch {m['torch']}, "
        f"transformers {m['transformers']}, lightning {m['lightning']}, datasets {m['datasets']}.",
        f"Recipe: {s['model']}, {s['train_samples']} training and {s['test_samples']} test reviews, "
        f"{s['epochs']} epoch(s), batch {s['batch_size']}, learning rate {s['learning_rate']}, "
        f"max length {s['max_length']}, {_seeds(report.get('seeds', [s['seed']]))}. Matmul peak"
        f"{'' if s.get('matmul_size') is None else ' (one size only: a rehearsal, MFU means nothing)'}: "
        f"{report['matmul_peak_gflops']['fp32']:,.0f} GFLOP/s fp32, {bf16}.",
        *(
            [
                f"Model: bert-base-uncased's dimensions ({s.get('layers', 12)} layers) with random weights "
                "(--shape bert-base), for speed only: its accuracy means nothing."
            ]
            if s.get("shape") == "bert-base"
            else []
        ),
        "",
    ]


def _seeds(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"seeds {', '.join(map(str, seeds))} (each system once per seed; mean ± standard deviation)"


def levers_markdown(report: dict) -> str:
    levers = report["levers"]
    base = next(iter(levers.values()))
    lines = [
        *header(report),
        f"bert_imdb, first {report['settings']['lever_steps']} training steps and one validation per row:",
        "",
        "| run | training real tokens/s | vs first row | padding | MFU | validation examples/s | vs first row "
        "| peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in levers.items():
        train = run["real_tokens_per_second"]
        evals = run["eval_reviews_per_second"]
        lines.append(
            f"| {name} | {train:,.0f} | {train / base['real_tokens_per_second']:.2f}x "
            f"| {run['padding_fraction']:.1%} | {run['mfu']:.1%} "
            f"| {evals:,.1f} | {evals / base['eval_reviews_per_second']:.2f}x | {run['peak_rss_gb']:.2f} GB |"
        )
    return "\n".join(lines) + "\n"


def config_markdown(report: dict) -> str:
    run, settings = report["runs"]["bert_imdb"], report["settings"]
    lines = [
        *header(report)[:1],
        f"`python -m bert_imdb fit --config {settings['config']}` and `test` of its best checkpoint, in one process "
        f"({settings['model']}, {settings['dataset']}; overrides: {' '.join(settings['override']) or 'none'}):",
        "",
        "| | bert_imdb |",
        "|---|---:|",
    ]
    for label, key, fmt in ROWS:
        if key in run:
            lines.append(f"| {label} | {_cell(run, key, fmt)} |")
    return "\n".join(lines) + "\n"


PEERS = {
    "peer": "seed peer (HF Trainer, pad to max length)",
    "tuned_peer": "tuned peer (HF Trainer, grouped by length, dynamic padding)",
}


def markdown(report: dict) -> str:
    names = {**PEERS, "bert_imdb": "bert_imdb"}
    names = {run: name for run, name in names.items() if run in report["runs"]}
    runs = [report["runs"][run] for run in names]
    compared = [peer for peer in PEERS if peer in report["ratios"]]
    versus = [f"vs {PEERS[peer].split(' (')[0]}" for peer in compared]
    lines = [
        *header(report),
        f"| | {' | '.join([*names.values(), *versus])} |",
        "|---|" + "---:|" * (len(names) + len(versus)),
    ]
    for label, key, fmt in ROWS:
        if all(key not in run for run in runs):
            continue
        cells = [_cell(run, key, fmt) for run in runs]
        ratio = {"wall_seconds": "speedup", "real_tokens_per_second": "throughput"}.get(key)
        notes = []
        for peer in compared:
            ratios = report["ratios"][peer]
            if key == "test_acc":
                notes.append(f"{ratios['accuracy_points']:+.1f} points")
            else:
                notes.append(f"{ratios[ratio]:.2f}x" if ratio else "")
        lines.append(f"| {label} | {' | '.join([*cells, *notes])} |")
    seeds = report.get("seeds", [])
    if len(seeds) > 1:
        by_seed = "; ".join(
            name + " " + ", ".join(f"{seed_run['test_acc']:.3f}" for seed_run in run["seeds"])
            for name, run in zip(names.values(), runs, strict=True)
        )
        lines += ["", f"Test accuracy by seed ({', '.join(map(str, seeds))}): {by_seed}."]
    return "\n".join(lines) + "\n"


def _cell(run: dict, key: str, fmt: str) -> str:
    if key not in run:
        return "-"
    cell = fmt.format(run[key] / 1e9 if key == "model_flops_per_second" else run[key])
    if f"{key}_sd" not in run or len(run["seeds"]) == 1:
        return cell
    return f"{cell} ± {fmt.format(run[f'{key}_sd'])}"
