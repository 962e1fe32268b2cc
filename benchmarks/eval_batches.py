"""Evaluation throughput by batch size: one classifier's forward pass over the same test reviews, sorted by
length, in batches of each of --batch-sizes. The evidence for data.eval_batch_size "auto"
(bert_imdb/data/device_defaults.py, docs/speed.md#evaluation-batches).

    python benchmarks/eval_batches.py                           # all-MiniLM-L6-v2, fp32
    python benchmarks/eval_batches.py --bf16                    # bf16 autocast (a CPU with bf16)

Reviews, truncation, warm-up and the token count are onnx_runtimes.py's. Writes
benchmarks/results/<stamp>-eval-batches.md and .json.
"""

import json
import sys
from datetime import datetime
from pathlib import Path

import torch
from onnx_runtimes import batches, measure, review_parser, run_torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bert_imdb.bench.report import machine
from bert_imdb.data.imdb import load_imdb
from bert_imdb.deployment.onnx_export import graph_inputs


def main() -> None:
    parser = review_parser(__doc__)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast instead of fp32")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    call = run_torch(model, graph_inputs(model, tokenizer), bf16=args.bf16)
    texts = load_imdb(args.dataset)["test"].shuffle(seed=args.seed).select(range(args.reviews))["text"]
    speeds = {}
    for size in args.batch_sizes:
        speeds[size], _ = measure(call, batches(tokenizer, texts, args.max_length, size))
        print(f"batches of {size}: {speeds[size]:,.0f} real tokens/s", flush=True)

    report = {
        "machine": machine(),
        "threads": torch.get_num_threads(),
        "args": vars(args),
        "tokens_per_second": speeds,
    }
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}-eval-batches.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Evaluation batches: {Path(args.model).name}, {report['machine']['cpu']}, {report['threads']} threads, "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}",
        "",
        f"`{' '.join(['python benchmarks/eval_batches.py', *sys.argv[1:]])}`: {args.reviews} IMDb test reviews up to "
        f"{args.max_length} tokens, sorted by length.",
        "",
        "| reviews a batch | " + " | ".join(map(str, speeds)) + " |",
        "|---|" + "---:|" * len(speeds),
        "| real tokens/s | " + " | ".join(f"{s:,.0f}" for s in speeds.values()) + " |",
    ]
    (out / f"{stamp}-eval-batches.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
