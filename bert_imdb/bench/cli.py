"""The benchmark's entry point: runs the comparison or measurement the options ask for, and writes its report
(`<output-dir>/<time>-<mode>.json` and `.md`)."""

import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from bert_imdb.bench.architectures import FAMILIES, architectures_markdown, build_encoder
from bert_imdb.bench.hardware import bf16_supported, datasheet_bf16_peak, matmul_peak
from bert_imdb.bench.options import LEVERS, MLM_LEVERS, RUNS, parse_args
from bert_imdb.bench.report import config_markdown, header, levers_markdown, machine, markdown
from bert_imdb.bench.runs import (
    across_seeds,
    build_bert_base,
    check_peer_installed,
    run_child,
    spawn,
    summarise,
)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.run:
        run_child(args)
        return
    argv = sys.argv[1:] if argv is None else argv
    architectures = args.architectures is not None
    comparison = not (architectures or args.levers is not None or args.mlm or args.sync_check or args.config)
    if comparison or architectures:
        check_peer_installed()
    print("bench: measuring dense matmul throughput", flush=True)
    peak_seconds = 1.0 if args.matmul_size is None else 0.05
    peaks = {"fp32": matmul_peak(torch.float32, peak_seconds, args.matmul_size)}
    bf16 = bf16_supported()
    peaks["bf16"] = matmul_peak(torch.bfloat16, peak_seconds, args.matmul_size) if bf16 else float("nan")
    peaks["datasheet_bf16"] = datasheet_bf16_peak()
    report = {
        "machine": machine(),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("run", "result", "lever", "output_dir")
        },
        "matmul_peak_gflops": {dtype: flops / 1e9 for dtype, flops in peaks.items() if flops is not None},
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        if args.shape == "bert-base":
            # Built once here; the runs read it as their model (a later --model wins in argparse).
            model = build_bert_base(args.model, Path(workdir) / "bert-base-random", args.seed, args.layers)
            argv = [*argv, "--model", str(model), "--shape", "model"]
        if args.sync_check and not torch.cuda.is_available():
            report["sync_check"] = {"sync_check": "not run: no CUDA device"}
        elif args.sync_check:
            report["sync_check"] = spawn("bert_imdb", argv, Path(workdir))
        elif architectures:
            report["architectures"] = {}
            for family in args.architectures or FAMILIES:
                for size in args.sizes:
                    folder = Path(workdir) / f"{family}-{size}"
                    folder, parameters = build_encoder(
                        family, size, args.model, folder, args.seed, args.max_length
                    )
                    on = [*argv, "--model", str(folder)]
                    report["architectures"][f"{family} {size}"] = {
                        "parameters": parameters,
                        "tuned_peer": summarise(spawn("tuned_peer", on, Path(workdir)), peaks),
                        "bert_imdb": summarise(spawn("bert_imdb", on, Path(workdir), "defaults"), peaks),
                    }
        elif args.config:
            report["runs"] = {"bert_imdb": summarise(spawn("bert_imdb", argv, Path(workdir)), peaks)}
        elif args.mlm or args.levers is not None:
            # The first lever is the defaults; --levers NAME ... runs it and those named, --mlm all of its own.
            levers = MLM_LEVERS if args.mlm else LEVERS
            first, *others = levers
            names = [first, *(name for name in others if name in args.levers)] if args.levers else levers
            report["levers"] = {
                name: summarise(spawn("bert_imdb", argv, Path(workdir), name), peaks) for name in names
            }
        else:
            # Seed by seed, each system in turn: a machine that drifts over the hour slows them all alike.
            # bert-base's random weights measure speed alone: one seed.
            seeds = args.seeds if args.shape == "model" else [args.seed]
            runs = {run: [] for run in RUNS if run in args.systems}
            for seed in seeds:
                for run in runs:
                    on = [*argv, "--seed", str(seed)]
                    runs[run].append(summarise(spawn(run, on, Path(workdir)), peaks))
            report["runs"] = {run: across_seeds(results) for run, results in runs.items()}
            report["seeds"] = seeds
    if args.sync_check:
        table = "\n".join([*header(report), f"Sync check: {report['sync_check']['sync_check']}", ""])
    elif args.config:
        table = config_markdown(report)
    elif architectures:
        table = architectures_markdown(header(report), report)
    elif not comparison:
        table = levers_markdown(report)
    else:
        ours = report["runs"].get("bert_imdb")
        report["ratios"] = {
            peer: {
                "speedup": report["runs"][peer]["wall_seconds"] / ours["wall_seconds"],
                "throughput": ours["real_tokens_per_second"] / report["runs"][peer]["real_tokens_per_second"],
                "accuracy_points": 100 * (ours["test_acc"] - report["runs"][peer]["test_acc"]),
            }
            for peer in ("peer", "tuned_peer")
            if ours and peer in report["runs"]
        }
        table = markdown(report)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    modes = {"sync-check-mlm": args.sync_check and args.mlm, "sync-check": args.sync_check}
    modes |= {"mlm": args.mlm, "levers": args.levers is not None, "architectures": architectures}
    modes |= {Path(args.config or "").stem: bool(args.config), "quick": args.quick}
    mode = next((name for name, chosen in modes.items() if chosen), "full")
    shape = "-bert-base" if args.shape == "bert-base" else ""
    stem = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{mode}{shape}"
    (output / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / f"{stem}.md").write_text(table)
    print(table)
    print(f"bench: wrote {output / stem}.json and .md")
