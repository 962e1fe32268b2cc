"""One training step of a classifier, timed under each attention setting, the AdamW step foreach and fused,
and the machine's fp32 and bf16 matmul rates: the per-step figures of benchmarks/results/README.md.

    python benchmarks/profile_step.py                       # all-MiniLM-L6-v2, 8 reviews of 288 tokens
    python benchmarks/profile_step.py --profile             # and torch.profiler's top operators per setting
    python benchmarks/profile_step.py --mlm --profile       # a masked-LM step instead: 32 blocks of 128

Times are the median of --steps steps after --warmup steps, on this machine's default device.
"""

import argparse
import statistics
import time

import torch

from bert_imdb.data.collate import LENGTHS, MASKED_INDEX
from bert_imdb.data.imdb import load_imdb
from bert_imdb.models.classifier import SentimentClassifier
from bert_imdb.models.masked_lm import MaskedLanguageModel
from bert_imdb.models.pretrained import load_tokenizer
from bert_imdb.precision import bf16_supported

# (name, SentimentClassifier arguments)
SETTINGS = [
    ("sdpa, attention dropout 0.1", {"attention_dropout": 0.1}),
    ("sdpa, attention dropout 0 (fused kernel)", {"attention_dropout": 0.0}),
    ("eager, attention dropout 0", {"attention_dropout": 0.0, "attn_implementation": "eager"}),
]
# (name, MaskedLanguageModel arguments) for --mlm
MLM_SETTINGS = [
    (
        "head on every position, sdpa, attention dropout 0.1",
        {"head_on_masked_only": False, "attention_dropout": 0.1},
    ),
    ("head on scored positions, sdpa, attention dropout 0", {}),
    ("head on scored positions, eager (configs/mlm.yaml)", {"attn_implementation": "eager"}),
]
MLM_PROBABILITY = 0.15


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2")
    parser.add_argument("--dataset", default="../shared/imdb")
    parser.add_argument("--batch-size", type=int, help="reviews per step (default 8, with --mlm 32)")
    parser.add_argument(
        "--length", type=int, help="tokens per review, no padding (default 288, with --mlm 128)"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=512, help="n of the n x n matmuls")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators")
    parser.add_argument(
        "--mlm",
        action="store_true",
        help="a masked-LM step (15%% of positions scored) instead of a classifier's",
    )
    args = parser.parse_args(argv)
    args.batch_size = args.batch_size or (32 if args.mlm else 8)
    args.length = args.length or (128 if args.mlm else 288)
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batch_of_reviews(args: argparse.Namespace, device: torch.device) -> dict:
    """The first `batch_size` training reviews of at least `length` tokens, cut to exactly `length`."""
    tokenizer = load_tokenizer(args.model)
    batch = []
    for text in load_imdb(args.dataset)["train"]["text"]:
        ids = tokenizer(text, truncation=True, max_length=args.length)["input_ids"]
        if len(ids) == args.length:
            batch.append(ids)
        if len(batch) == args.batch_size:
            break
    ids = torch.tensor(batch, device=device)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.arange(len(batch), device=device) % 2,
    }


def masked(batch: dict) -> dict:
    """The batch as the masked-LM collator hands it over: a seeded 15% of positions scored (all of them
    replaced by [MASK]'s id would not change the timing), their flat index, and the lengths."""
    ids = batch["input_ids"]
    scored = (
        torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)).to(ids.device) < MLM_PROBABILITY
    )
    return {
        "input_ids": ids,
        "attention_mask": batch["attention_mask"],
        "token_type_ids": torch.zeros_like(ids),
        "labels": torch.where(scored, ids, -100),
        MASKED_INDEX: scored.flatten().nonzero().flatten(),
        LENGTHS: [ids.shape[1]] * len(ids),
    }


def training_step(module, optimizer: torch.optim.Optimizer, batch: dict, dtype):
    def step() -> None:
        with torch.autocast(batch["input_ids"].device.type, dtype=dtype, enabled=dtype != torch.float32):
            if isinstance(module, MaskedLanguageModel):
                loss, _ = module._loss(batch, *module._forward(batch))
            else:
                loss = module.model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def matmul_gflops(dtype: torch.dtype, n: int, device: torch.device, seconds: float = 2.0) -> float:
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < seconds:
        a @ b
        sync(device)
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = batch_of_reviews(args, device)
    module_class, settings_list = (
        (MaskedLanguageModel, MLM_SETTINGS) if args.mlm else (SentimentClassifier, SETTINGS)
    )
    if args.mlm:
        batch = masked(batch)
    shape = "x".join(map(str, batch["input_ids"].shape))
    # bf16 autocast only where the device computes in bf16: elsewhere it is emulated (see the matmuls).
    dtypes = [torch.float32] + ([torch.bfloat16] if bf16_supported(device) else [])
    for dtype in dtypes:
        what = "fp32" if dtype == torch.float32 else "bf16 autocast"
        step_of = "masked-LM training step" if args.mlm else "training step"
        print(f"One {step_of} of {args.model} on {shape} tokens ({device}, {what}), median of {args.steps}:")
        for name, settings in settings_list:
            torch.manual_seed(0)
            module = module_class(args.model, **settings).to(device)
            optimizer = torch.optim.AdamW(module.parameters(), lr=1e-5, fused=True)
            step = training_step(module, optimizer, batch, dtype)
            print(f"  {name}: {median_seconds(step, args.steps, args.warmup, device) * 1000:,.0f} ms")
            if args.profile:
                with torch.profiler.profile() as profile:
                    step()
                print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    if args.mlm:
        return

    module = SentimentClassifier(args.model).to(device)
    module.model(**batch).loss.backward()  # gradients for the optimizer to apply
    print("AdamW step alone, median of steps:")
    for fused in (False, True):
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-5, foreach=not fused, fused=fused)
        seconds = median_seconds(optimizer.step, args.steps, args.warmup, device)
        print(f"  {'fused' if fused else 'foreach'}: {seconds * 1000:,.1f} ms")

    n = args.matmul_size
    print(f"{n} x {n} matmuls, repeated for 2 s:")
    for dtype in (torch.float32, torch.bfloat16):
        print(f"  {str(dtype).removeprefix('torch.')}: {matmul_gflops(dtype, n, device):,.2f} GFLOP/s")


if __name__ == "__main__":
    main()
