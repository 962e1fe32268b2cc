"""Inference throughput of a classifier under PyTorch (fp32, bf16 autocast where the CPU has bf16) and ONNX
Runtime (fp32, dynamic int8), on the same test reviews: the table of docs/speed.md#onnx-runtime.

    python benchmarks/onnx_runtimes.py                          # all-MiniLM-L6-v2, a random head
    python benchmarks/onnx_runtimes.py --model exported         # an export of a fine-tuned classifier
    python benchmarks/onnx_runtimes.py --model exported --agreement 2000   # and accuracy of each runtime
    python benchmarks/onnx_runtimes.py --model exported --agreement 25000 --agreement-runtimes torch-fp32 ort-int8

Reviews are the first --reviews of a seeded shuffle of IMDb's test split, cut to --max-length tokens,
sorted by length and batched by --batch-size (as predict batches them). Each runtime runs one batch to warm
up, then all of them; throughput counts real tokens (padding excluded). Labels and probabilities are
compared with PyTorch fp32's. With --agreement N, each runtime of --agreement-runtimes (all by default)
also labels the first N reviews of that shuffle (25000: the whole test split): its accuracy, and its labels
against PyTorch fp32's there where that runs too. Writes benchmarks/results/<stamp>-onnx.md and .json.
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bert_imdb.bench.report import machine
from bert_imdb.data.imdb import load_imdb
from bert_imdb.deployment.onnx_export import INT8_FILE, ONNX_FILE, graph_inputs, onnx_modules, write_onnx
from bert_imdb.precision import bf16_supported

REPO = Path(__file__).resolve().parents[1]
# --agreement-runtimes' names for the runtimes of the table.
RUNTIME_KEYS = {
    "torch-fp32": "PyTorch fp32",
    "torch-bf16": "PyTorch bf16 autocast",
    "ort-fp32": "ONNX Runtime fp32",
    "ort-int8": "ONNX Runtime int8 (dynamic, per channel, MatMul)",
    "ort-int8-defaults": "ONNX Runtime int8 (dynamic, ORT defaults)",
}


def batches(tokenizer, texts: list[str], max_length: int, batch_size: int) -> list[dict]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    out = []
    for start in range(0, len(order), batch_size):
        rows = [{k: encoded[k][i] for k in encoded} for i in order[start : start + batch_size]]
        out.append((order[start : start + batch_size], tokenizer.pad(rows, return_tensors="pt")))
    return out


def run_torch(model, inputs, bf16: bool):
    def call(batch):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**{name: batch[name] for name in inputs}).logits.float()

    return call


def run_onnx(path: Path, threads: int):
    _, ort = onnx_modules()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()]

    def call(batch):
        return torch.from_numpy(session.run(["logits"], {n: batch[n].numpy() for n in names})[0])

    return call


def measure(call, data) -> tuple[float, torch.Tensor]:
    """Real tokens per second over all batches (after one batch of warm-up), and the probabilities in
    review order."""
    call(data[-1][1])
    probabilities = {}
    tokens, start = 0, time.perf_counter()
    for order, batch in data:
        p = call(batch).softmax(-1)
        probabilities.update(zip(order, p, strict=True))
        tokens += int(batch["attention_mask"].sum())
    seconds = time.perf_counter() - start
    return tokens / seconds, torch.stack([probabilities[i] for i in range(len(probabilities))])


def review_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of a run over test reviews (this script's and eval_batches.py's): the model, the
    reviews and their length, the seed of their shuffle, where results go."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(REPO.parent / "shared" / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "imdb"))
    parser.add_argument("--reviews", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    return parser


def main() -> None:
    parser = review_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--agreement",
        type=int,
        default=0,
        help="label the first N reviews of the test shuffle (25000: all) for accuracy and agreement",
    )
    parser.add_argument(
        "--agreement-runtimes",
        nargs="+",
        choices=list(RUNTIME_KEYS),
        default=list(RUNTIME_KEYS),
        help="the runtimes that label the --agreement reviews (each takes minutes per thousand on a CPU)",
    )
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    inputs = graph_inputs(model, tokenizer)
    test = load_imdb(args.dataset)["test"].shuffle(seed=args.seed)
    threads = torch.get_num_threads()
    folder = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    if (Path(args.model) / ONNX_FILE).is_file() and (Path(args.model) / INT8_FILE).is_file():
        folder = Path(args.model)
    else:
        write_onnx(model, tokenizer, folder, int8=True)
    runtimes = {RUNTIME_KEYS["torch-fp32"]: run_torch(model, inputs, bf16=False)}
    if bf16_supported(torch.device("cpu")):
        runtimes[RUNTIME_KEYS["torch-bf16"]] = run_torch(model, inputs, bf16=True)
    runtimes[RUNTIME_KEYS["ort-fp32"]] = run_onnx(folder / ONNX_FILE, threads)
    runtimes[RUNTIME_KEYS["ort-int8"]] = run_onnx(folder / INT8_FILE, threads)
    # What export --quantize int8 chose against: ONNX Runtime's defaults (one scale per tensor, every op).
    from onnxruntime.quantization import QuantType, quantize_dynamic

    defaults = Path(tempfile.mkdtemp(prefix="onnx-bench-")) / "model.int8-defaults.onnx"
    quantize_dynamic(str(folder / ONNX_FILE), str(defaults), weight_type=QuantType.QInt8)
    runtimes[RUNTIME_KEYS["ort-int8-defaults"]] = run_onnx(defaults, threads)

    data = batches(tokenizer, test.select(range(args.reviews))["text"], args.max_length, args.batch_size)
    results, reference = {}, None
    for name, call in runtimes.items():
        speed, probabilities = measure(call, data)
        reference = probabilities if reference is None else reference
        results[name] = {
            "real_tokens_per_second": speed,
            "labels_as_fp32": float((probabilities.argmax(-1) == reference.argmax(-1)).float().mean()),
            "max_probability_difference": float((probabilities - reference).abs().max()),
        }
        print(f"{name}: {speed:,.0f} real tokens/s", flush=True)
    if args.agreement:
        labelled = test.select(range(min(args.agreement, len(test))))
        data = batches(tokenizer, labelled["text"], args.max_length, args.batch_size)
        labels = torch.tensor(list(labelled["label"]))
        chosen = [RUNTIME_KEYS[key] for key in args.agreement_runtimes if RUNTIME_KEYS[key] in runtimes]
        predicted = {}
        for name in chosen:
            predicted[name] = measure(runtimes[name], data)[1].argmax(-1)
            results[name]["accuracy"] = float((predicted[name] == labels).float().mean())
            print(f"{name}: accuracy {results[name]['accuracy']:.4f} on {len(labels)} reviews", flush=True)
        fp32_labels = predicted.get(RUNTIME_KEYS["torch-fp32"])
        if fp32_labels is not None:
            for name in chosen:
                results[name]["agreement_labels_as_fp32"] = float(
                    (predicted[name] == fp32_labels).float().mean()
                )

    report = {"machine": machine(), "threads": threads, "args": vars(args), "results": results}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}-onnx.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Inference runtimes: {Path(args.model).name}, {report['machine']['cpu']}, {threads} threads",
        "",
        f"`python benchmarks/onnx_runtimes.py {' '.join(sys.argv[1:])}`: "
        f"{args.reviews} IMDb test reviews up to {args.max_length} tokens, batches of {args.batch_size} sorted by length"
        + (
            f"; accuracy and labels on the first {len(labels)} of the test split's shuffle."
            if args.agreement
            else "."
        ),
        "",
        "| runtime | real tokens/s | labels as PyTorch fp32 | max probability difference |"
        + (f" accuracy ({len(labels)}) | labels as PyTorch fp32 ({len(labels)}) |" if args.agreement else ""),
        "| --- | ---: | ---: | ---: |" + (" ---: | ---: |" if args.agreement else ""),
    ]
    for name, r in results.items():
        row = f"| {name} | {r['real_tokens_per_second']:,.0f} | {r['labels_as_fp32']:.1%} | {r['max_probability_difference']:.2g} |"
        if args.agreement:
            agree = r.get("agreement_labels_as_fp32")
            row += f" {r['accuracy']:.4f} |" if "accuracy" in r else " - |"
            row += f" {agree:.2%} |" if agree is not None else " - |"
        lines.append(row)
    (out / f"{stamp}-onnx.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / f'{stamp}-onnx.md'}")


if __name__ == "__main__":
    main()
