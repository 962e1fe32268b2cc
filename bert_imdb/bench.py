"""`python -m bert_imdb.bench`: the seed recipe and bert_imdb, fine-tuned back to back, side by side.

The peer is the recipe bert_imdb replaces, written here as the seed wrote it: Hugging Face `Trainer`,
`BertTokenizer` padding every review to `max_length`, evaluation on the test reviews every epoch. Both
train on the same reviews with the same model, seed, epochs, batch size and learning rate, each in its
own process (so peak memory is its own) with an empty datasets cache (so both tokenize). Before them,
the machine's dense matmul throughput is measured, to report model FLOPs utilisation (MFU).

Results go to `<output-dir>/<time>-<mode>.json` and `.md` (never overwriting an earlier result).
"""

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch

from bert_imdb import precision
from bert_imdb.bench_report import config_markdown, header, levers_markdown, machine, markdown
from bert_imdb.errors import UserError
from bert_imdb.throughput import LENGTHS, FlopCounter, masked_positions, model_flops

RUNS = ("peer", "bert_imdb")
# Sized for an AVX2 CPU without bf16, 2 cores: 400/200 took 12:45 there, mostly the peer.
QUICK = {"train_samples": 200, "test_samples": 100, "epochs": 1}
# --levers: bert_imdb's defaults, then each lever turned the other way.
LEVERS = {
    "defaults": [],
    "random batches": ["--data.group_by_length=false"],
    "fp32": ["--trainer.precision=32-true"],
    "attention dropout 0.1": ["--model.attention_dropout=null"],
    "eager attention": ["--model.attn_implementation=eager"],
    "pad to a multiple of 8": ["--data.pad_to_multiple_of=8"],
    "pad to a multiple of 64": ["--data.pad_to_multiple_of=64"],
    "fp32, pad to a multiple of 64": ["--trainer.precision=32-true", "--data.pad_to_multiple_of=64"],
    "evaluation batch 8": ["--data.eval_batch_size=8"],
    "1 DataLoader worker": ["--data.num_workers=1"],
    "torch.compile": ["--model.compile=true"],
}
# --mlm: the masked-LM head on the scored positions only (the default), and on every position.
MLM_LEVERS = {
    "MLM, head on scored positions": [],
    "MLM, head on every position": ["--model.head_on_masked_only=false"],
    "MLM, eager attention": ["--model.attn_implementation=eager"],
    # The module as it was before both levers: the head everywhere, BERT's own attention dropout (0.1).
    "MLM, head on every position, attention dropout 0.1": [
        "--model.head_on_masked_only=false",
        "--model.attention_dropout=null",
    ],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bert_imdb.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2", help="Hub id or local folder")
    parser.add_argument("--dataset", default="../shared/imdb", help="as data.dataset")
    parser.add_argument("--train-samples", type=int, default=1000, help="training reviews")
    parser.add_argument("--test-samples", type=int, default=500, help="test (and validation) reviews")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="training reviews per step")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="Trainer's default")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per review, at most")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['train_samples']} training and {QUICK['test_samples']} test reviews, 1 epoch "
        "(under 10 minutes on 2 CPU cores)",
    )
    parser.add_argument(
        "--levers",
        nargs="*",
        choices=list(LEVERS),
        metavar="LEVER",
        help="instead of the comparison: bert_imdb's defaults, then each speed lever turned the other way "
        f"(all, or those named: {', '.join(repr(name) for name in LEVERS)}), --lever-steps training steps "
        "and one validation each",
    )
    parser.add_argument("--lever-steps", type=int, default=60, help="training steps per --levers, --mlm run")
    parser.add_argument(
        "--mlm",
        action="store_true",
        help="instead of the comparison: masked-LM pre-training throughput (bert_imdb, --lever-steps steps of "
        "blocks of --max-length tokens), with the MLM head on the scored positions only and on every position",
    )
    parser.add_argument(
        "--sync-check",
        action="store_true",
        help="instead of the comparison: --lever-steps training steps on a GPU under "
        'torch.cuda.set_sync_debug_mode("error"): fails if any step waits for the device',
    )
    parser.add_argument(
        "--config",
        help="instead of the comparison: fit and test of this config (with --model and --dataset, and any "
        "--override), timed, in one process: configs/full-minilm.yaml on a GPU",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="ARG",
        help="with --config: a command-line argument for the run, e.g. --override=--trainer.max_epochs=1",
    )
    parser.add_argument(
        "--shape",
        choices=["model", "bert-base"],
        default="model",
        help="bert-base: both runs train a model of bert-base-uncased's dimensions with random weights (and "
        "--model's tokenizer): for speed only, its accuracy means nothing",
    )
    parser.add_argument("--output-dir", default="benchmarks/results", help="where the JSON and Markdown go")
    # The runs are this module again, in child processes.
    parser.add_argument("--run", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--lever", choices=[*LEVERS, *MLM_LEVERS], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    return args


def bf16_supported() -> bool:
    return precision.bf16_supported(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def matmul_peak(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Dense square matmul throughput in FLOP/s, the best of three sizes: the most this machine's math
    units give a model."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = 0.0
    for n in (4096, 8192, 16384) if device == "cuda" else (1024, 2048, 4096):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(10 if device == "cuda" else 1):
                a @ b
                count += 1
            if device == "cuda":
                torch.cuda.synchronize()
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best


def peak_memory() -> dict:
    memory = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if torch.cuda.is_available():
        memory["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return memory


class TrainingClock(L.Callback):
    """Time spent training (validation excluded) and the tokens trained on, real and padded; and the
    time fit's validations took, and the reviews they saw."""

    def __init__(self):
        self.seconds = self.eval_seconds = 0.0
        self.real_tokens = self.padded_tokens = self.flops = self.eval_reviews = 0
        self._since: float | None = None
        self._eval_since = 0.0

    def _start(self) -> None:
        self._since = time.perf_counter()

    def _stop(self) -> None:
        if self._since is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop()
        self._eval_since = time.perf_counter()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking:
            self.eval_reviews += len(batch["input_ids"])

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.eval_seconds += time.perf_counter() - self._eval_since
            self._start()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._count = FlopCounter(pl_module.model)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Counted on the host, from the lengths the collator read: the clock must not wait for the device.
        lengths = batch[LENGTHS]
        self.real_tokens += sum(lengths)
        self.padded_tokens += batch["input_ids"].numel()
        self.flops += self._count(lengths, masked_positions(batch))


class SyncCheck(L.Callback):
    def __init__(self, first_step: int = 2):
        """From the end of training step `first_step` to the end of the run's last step, any CUDA call that
        waits for the device raises (torch.cuda.set_sync_debug_mode("error")). Runs last among the callbacks,
        so that theirs are checked too. Give the run no validation and no log step in between.

        Args:
            first_step: The step after which the check starts (the first ones warm up).
        """
        self.first_step = first_step

    def setup(self, trainer, pl_module, stage: str) -> None:
        trainer.callbacks.remove(self)
        trainer.callbacks.append(self)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.first_step:
            torch.cuda.set_sync_debug_mode("error")
        if trainer.global_step >= trainer.max_steps:
            torch.cuda.set_sync_debug_mode("default")

    def on_exception(self, trainer, pl_module, exception) -> None:
        torch.cuda.set_sync_debug_mode("default")


def bert_imdb_args(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The command-line arguments of a bert_imdb run of these settings: the classifier, or with --mlm the
    masked-LM module on blocks of --max-length tokens."""
    precision = "bf16-mixed" if bf16_supported() else "32-true"
    if args.mlm:
        task = [
            "--model=bert_imdb.MaskedLanguageModel",
            "--data=bert_imdb.IMDbPretrainingDataModule",
            f"--data.max_train_reviews={args.train_samples}",
            f"--data.val_reviews={args.test_samples}",
        ]
    else:
        task = [
            f"--data.max_train_samples={args.train_samples}",
            f"--data.max_val_samples={args.test_samples}",
            f"--data.max_test_samples={args.test_samples}",
        ]
    return [
        *task,
        f"--model.model_name_or_path={args.model}",
        f"--model.learning_rate={args.learning_rate}",
        f"--data.dataset={args.dataset}",
        f"--data.max_length={args.max_length}",
        f"--data.batch_size={args.batch_size}",
        f"--seed_everything={args.seed}",
        f"--trainer.precision={precision}",
        f"--trainer.max_epochs={args.epochs}",
        f"--trainer.logger.init_args.save_dir={workdir}",
        "--trainer.enable_progress_bar=false",
    ]


def run_bert_imdb(args: argparse.Namespace, workdir: Path) -> dict:
    from bert_imdb.cli import cli_main

    common = bert_imdb_args(args, workdir)
    if args.config:
        # The config's recipe, on the model and reviews given: only what says where things are is set here.
        where = [f"--model.model_name_or_path={args.model}", f"--data.dataset={args.dataset}"]
        common = [f"--config={args.config}", *where, f"--trainer.logger.init_args.save_dir={workdir}"]
        common += ["--trainer.enable_progress_bar=false", *args.override]
    steps = [f"--trainer.max_steps={args.lever_steps}"]
    if args.sync_check:
        if not torch.cuda.is_available():
            return {"sync_check": "not run: no CUDA device"}
        # No validation and no log step inside the checked steps: both read from the device on purpose.
        quiet = ["--trainer.limit_val_batches=0", f"--trainer.log_every_n_steps={args.lever_steps + 1}"]
        check = ["--trainer.callbacks+=bert_imdb.bench.SyncCheck"]
        try:
            cli_main(["fit", *common, *steps, *quiet, *check])
        except RuntimeError as err:
            return {"sync_check": f"failed: {str(err).strip().splitlines()[0]}", "steps": args.lever_steps}
        return {"sync_check": "passed", "steps": args.lever_steps}
    if args.lever is not None:
        # A lever run: the first steps, one validation, no test.
        levers = MLM_LEVERS if args.mlm else LEVERS
        common += [*steps, f"--trainer.val_check_interval={args.lever_steps}", *levers[args.lever]]
    started = time.perf_counter()
    fit = cli_main(["fit", *common, "--trainer.callbacks+=bert_imdb.bench.TrainingClock"])
    fitted = time.perf_counter()
    clock = next(c for c in fit.trainer.callbacks if isinstance(c, TrainingClock))
    result = {
        "precision": fit.trainer.precision,
        "train_seconds": clock.seconds,
        "real_tokens": clock.real_tokens,
        "padded_tokens": clock.padded_tokens,
        "flops": clock.flops,
        "eval_seconds": clock.eval_seconds,
        "eval_reviews": clock.eval_reviews,
        "fit_seconds": fitted - started,
    }
    if args.lever is None:
        test = cli_main(["test", *common, f"--ckpt_path={fit.trainer.checkpoint_callback.best_model_path}"])
        result["test_acc"] = float(test.trainer.callback_metrics["test/acc"])
        result["test_seconds"] = time.perf_counter() - fitted
    return result


def build_bert_base(tokenizer_source: str, folder: Path, seed: int) -> Path:
    """A model folder of bert-base-uncased's dimensions (12 layers, hidden 768, 12 heads, 3,072, 512
    positions) with random weights and `tokenizer_source`'s tokenizer: the shapes users train, without a
    download. Speed only: it has learned nothing."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    # BertConfig's defaults are bert-base's dimensions.
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_peer(args: argparse.Namespace, workdir: Path) -> dict:
    """The seed recipe: fixed-length padding, transformers' Trainer, evaluation on test every epoch."""
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        BertTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from bert_imdb.imdb import imdb_subsets

    class Clock(TrainerCallback):
        # Trainer calls on_epoch_end before it evaluates, so epochs time training alone.
        seconds, since, accuracies = 0.0, 0.0, []

        def on_epoch_begin(self, *_, **__):
            self.since = time.perf_counter()

        def on_epoch_end(self, *_, **__):
            self.seconds += time.perf_counter() - self.since

        def on_evaluate(self, *_, metrics, **__):
            self.accuracies.append(metrics["eval_accuracy"])

    def accuracy(prediction) -> dict:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    subsets = imdb_subsets(args.dataset, args.seed, args.train_samples, args.test_samples, args.test_samples)
    tokenizer = BertTokenizer.from_pretrained(args.model)

    def encode(batch: dict) -> dict:
        return tokenizer(batch["text"], padding="max_length", truncation=True, max_length=args.max_length)

    train, test = (subsets[s].map(encode, batched=True, remove_columns=["text"]) for s in ("train", "test"))
    # fp32 weights whatever the checkpoint stores, as transformers 4 (the seed's) loaded them by default.
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2, dtype=torch.float32)
    bf16 = torch.cuda.is_available() and bf16_supported()  # the seed ran in fp32 on the CPU
    training_args = TrainingArguments(
        output_dir=str(workdir),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        eval_strategy="epoch",
        save_strategy="no",
        seed=args.seed,
        bf16=bf16,
        report_to="none",
        disable_tqdm=True,
    )
    clock = Clock()
    Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=test,
        compute_metrics=accuracy,
        callbacks=[clock],
    ).train()
    lengths = torch.tensor([sum(mask) for mask in train["attention_mask"]])
    return {
        "precision": "bf16-mixed" if bf16 else "32-true",
        "train_seconds": clock.seconds,
        "real_tokens": int(lengths.sum()) * args.epochs,
        "padded_tokens": len(train) * args.max_length * args.epochs,
        "flops": model_flops(model, lengths.tolist()) * args.epochs,
        "test_acc": clock.accuracies[-1],
        "test_acc_per_epoch": clock.accuracies,
    }


def check_peer_installed() -> None:
    if importlib.util.find_spec("accelerate") is None:
        raise UserError(
            "the peer runs transformers' Trainer, which needs accelerate: pip install -e '.[bench]'"
        )


def run_child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.run}-") as workdir:
        run = run_peer if args.run == "peer" else run_bert_imdb
        result = run(args, Path(workdir))
    result.update(peak_memory())
    Path(args.result).write_text(json.dumps(result))


def spawn(run: str, argv: list[str], workdir: Path, lever: str | None = None) -> dict:
    name = run if lever is None else f"{run}, {lever}"
    result = workdir / f"{name}.json"
    command = [sys.executable, "-m", "bert_imdb.bench", *argv, "--run", run, "--result", str(result)]
    command += [] if lever is None else ["--lever", lever]
    # An empty datasets cache: each run loads and tokenizes its reviews, as a first run would. Set before
    # the child starts: datasets reads HF_DATASETS_CACHE when it is imported.
    env = {**os.environ, "HF_DATASETS_CACHE": str(workdir / f"{name} cache")}
    print(f"bench: running {name}", flush=True)
    start = time.perf_counter()
    finished = subprocess.run(command, env=env)
    wall = time.perf_counter() - start
    if finished.returncode != 0:
        raise UserError(f"the {name} run failed (exit {finished.returncode}); its output is above")
    return {"wall_seconds": wall, **json.loads(result.read_text())}


def summarise(run: dict, peaks: dict) -> dict:
    seconds = run["train_seconds"]
    peak = peaks["bf16" if run["precision"].startswith("bf16") else "fp32"]
    if run.get("eval_seconds"):
        run["eval_reviews_per_second"] = run["eval_reviews"] / run["eval_seconds"]
    run["real_tokens_per_second"] = run["real_tokens"] / seconds
    run["padding_fraction"] = 1 - run["real_tokens"] / run["padded_tokens"]
    run["model_flops_per_second"] = run["flops"] / seconds
    run["mfu"] = run["flops"] / seconds / peak
    return run


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.run:
        run_child(args)
        return
    argv = sys.argv[1:] if argv is None else argv
    comparison = args.levers is None and not args.mlm and not args.sync_check and not args.config
    if comparison:
        check_peer_installed()
    print("bench: measuring dense matmul throughput", flush=True)
    peaks = {"fp32": matmul_peak(torch.float32)}
    peaks["bf16"] = matmul_peak(torch.bfloat16) if bf16_supported() else float("nan")
    report = {
        "machine": machine(),
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("run", "result", "lever", "output_dir")
        },
        "matmul_peak_gflops": {dtype: flops / 1e9 for dtype, flops in peaks.items()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        if args.shape == "bert-base":
            # Built once here; the runs read it as their model (a later --model wins in argparse).
            model = build_bert_base(args.model, Path(workdir) / "bert-base-random", args.seed)
            argv = [*argv, "--model", str(model), "--shape", "model"]
        if args.sync_check:
            report["sync_check"] = spawn("bert_imdb", argv, Path(workdir))
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
            report["runs"] = {run: summarise(spawn(run, argv, Path(workdir)), peaks) for run in RUNS}
    if args.sync_check:
        table = "\n".join([*header(report), f"Sync check: {report['sync_check']['sync_check']}", ""])
    elif args.config:
        table = config_markdown(report)
    elif not comparison:
        table = levers_markdown(report)
    else:
        peer, ours = report["runs"]["peer"], report["runs"]["bert_imdb"]
        report["ratios"] = {
            "speedup": peer["wall_seconds"] / ours["wall_seconds"],
            "throughput": ours["real_tokens_per_second"] / peer["real_tokens_per_second"],
            "accuracy_points": 100 * (ours["test_acc"] - peer["test_acc"]),
        }
        table = markdown(report)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    modes = {"sync-check": args.sync_check, "mlm": args.mlm, "levers": args.levers is not None}
    modes |= {Path(args.config or "").stem: bool(args.config), "quick": args.quick}
    mode = next((name for name, chosen in modes.items() if chosen), "full")
    shape = "-bert-base" if args.shape == "bert-base" else ""
    stem = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{mode}{shape}"
    (output / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / f"{stem}.md").write_text(table)
    print(table)
    print(f"bench: wrote {output / stem}.json and .md")


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: the CLI builds TrainingClock from
    # "bert_imdb.bench", and the run finds it by class.
    from bert_imdb import bench

    try:
        bench.main()
    except UserError as err:
        sys.exit(f"error: {err}")
