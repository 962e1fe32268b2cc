"""The runs the benchmark compares, each in a process of its own: bert_imdb (through its CLI) and two
peers on transformers' Trainer, the seed recipe and the same Trainer tuned as an experienced user would."""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bert_imdb.bench.clock import TrainingClock
from bert_imdb.bench.hardware import bf16_supported, peak_memory
from bert_imdb.bench.options import LEVERS, MLM_LEVERS
from bert_imdb.errors import UserError
from bert_imdb.models.flops import model_flops


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
        # No log step inside the checked steps: it reads the loss from the device on purpose. One validation
        # halfway, of a few batches: its steps are checked too, its end (where metrics sync) is not.
        quiet = [
            f"--trainer.log_every_n_steps={args.lever_steps + 1}",
            f"--trainer.val_check_interval={max(args.lever_steps // 2, 1)}",
            "--trainer.limit_val_batches=4",
        ]
        check = ["--trainer.callbacks+=bert_imdb.bench.clock.SyncCheck"]
        try:
            cli_main(["fit", *common, *steps, *quiet, *check])
        except RuntimeError as err:
            return {"sync_check": f"failed: {str(err).strip().splitlines()[0]}", "steps": args.lever_steps}
        return {"sync_check": "passed", "steps": args.lever_steps}
    if args.lever is not None:
        # A lever run: the first steps, one validation, no test.
        levers = MLM_LEVERS if args.mlm else LEVERS
        common += [*steps, f"--trainer.val_check_interval={args.lever_steps}", *levers[args.lever]]
    else:
        # The best weights tested in the fit's process: no second start-up, model load and tokenization.
        common.append("--test_after_fit=true")
    if not (args.config or args.lever):
        # No sanity check of the validation the epoch's end runs anyway (the peers have none).
        common.append("--trainer.num_sanity_val_steps=0")
        if args.epochs == 1:
            # Validation only picks the best epoch's weights: with one there is nothing to pick, so the
            # last weights are tested, as the peers test theirs.
            common.append("--trainer.limit_val_batches=0")
    started = time.perf_counter()
    fit = cli_main(["fit", *common, "--trainer.callbacks+=bert_imdb.bench.clock.TrainingClock"])
    ended = time.perf_counter()
    clock = next(c for c in fit.trainer.callbacks if isinstance(c, TrainingClock))
    result = {
        "precision": fit.trainer.precision,
        "train_seconds": clock.seconds,
        "real_tokens": clock.real_tokens,
        "padded_tokens": clock.padded_tokens,
        "flops": clock.flops,
        "eval_seconds": clock.eval_seconds,
        "eval_reviews": clock.eval_reviews,
        "fit_seconds": clock.fit_ended - started,
    }
    if args.lever is None:
        result["test_acc"] = float(fit.trainer.callback_metrics["test/acc"])
        result["test_seconds"] = ended - clock.fit_ended
    return result


def build_bert_base(tokenizer_source: str, folder: Path, seed: int, layers: int = 12) -> Path:
    """A model folder of bert-base-uncased's dimensions (12 layers, or `layers`; hidden 768, 12 heads,
    3,072, 512 positions) with random weights and `tokenizer_source`'s tokenizer: the shapes users train,
    without a download. Speed only: it has learned nothing."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    # BertConfig's defaults are bert-base's dimensions.
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, num_hidden_layers=layers)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_peer(args: argparse.Namespace, workdir: Path, tuned: bool = False) -> dict:
    """transformers' Trainer, in one of two recipes. The seed recipe (the project's starting point): the
    slow tokenizer, every review padded to max length, evaluation on test every epoch, fp32 on the CPU.
    The tuned peer, as an experienced user configures the same Trainer: the fast tokenizer, padding to the
    batch's longest review (a multiple of 8), batches grouped by length, bf16 wherever it is native (CPU
    or GPU), and one evaluation at the end, in batches 4 times larger."""
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from bert_imdb.data.imdb import imdb_subsets

    class Clock(TrainerCallback):
        # Trainer calls on_epoch_end before it evaluates, so epochs time training alone.
        seconds, since, accuracies, training = 0.0, 0.0, [], False

        def on_epoch_begin(self, *_, **__):
            self.since, self.training = time.perf_counter(), True

        def on_epoch_end(self, *_, **__):
            self.seconds += time.perf_counter() - self.since
            self.training = False

        def on_evaluate(self, *_, metrics, **__):
            self.accuracies.append(metrics["eval_accuracy"])

    def accuracy(prediction) -> dict:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    subsets = imdb_subsets(args.dataset, args.seed, args.train_samples, args.test_samples, args.test_samples)
    tokenizer = (AutoTokenizer if tuned else BertTokenizer).from_pretrained(args.model)
    padding = "do_not_pad" if tuned else "max_length"

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch["text"], padding=padding, truncation=True, max_length=args.max_length)
        return {**encoded, "length": [sum(mask) for mask in encoded["attention_mask"]]}

    train, test = (subsets[s].map(encode, batched=True, remove_columns=["text"]) for s in ("train", "test"))
    # fp32 weights whatever the checkpoint stores, as transformers 4 (the seed's) loaded them by default.
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2, dtype=torch.float32)
    # The seed ran in fp32 on the CPU; the tuned peer uses bf16 where the CPU or GPU computes in it.
    bf16 = bf16_supported() and (tuned or torch.cuda.is_available())
    clock = Clock()
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8) if tuned else None
    padded = [0]

    def counting_collate(features: list[dict]) -> dict:
        batch = collate(features)
        if clock.training:
            padded[0] += batch["input_ids"].numel()
        return batch

    training_args = TrainingArguments(
        output_dir=str(workdir),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size * (4 if tuned else 1),
        learning_rate=args.learning_rate,
        eval_strategy="no" if tuned else "epoch",
        train_sampling_strategy="group_by_length" if tuned else "random",
        save_strategy="no",
        seed=args.seed,
        bf16=bf16,
        # transformers refuses bf16 without a GPU unless told the run is on the CPU (even where the CPU
        # computes in bf16).
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=test,
        data_collator=counting_collate if tuned else None,
        compute_metrics=accuracy,
        callbacks=[clock],
    )
    trainer.train()
    if tuned:
        trainer.evaluate()
    lengths = torch.tensor(train["length"])
    return {
        "precision": "bf16-mixed" if bf16 else "32-true",
        "train_seconds": clock.seconds,
        "real_tokens": int(lengths.sum()) * args.epochs,
        "padded_tokens": padded[0] if tuned else len(train) * args.max_length * args.epochs,
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
        if args.run == "bert_imdb":
            result = run_bert_imdb(args, Path(workdir))
        else:
            result = run_peer(args, Path(workdir), tuned=args.run == "tuned_peer")
    result.update(peak_memory())
    Path(args.result).write_text(json.dumps(result))


def child_arguments(run: str, argv: list[str], result: Path, lever: str | None = None) -> list[str]:
    """The bench's arguments for one run (`run_child`'s), which writes what it measured to `result`."""
    return [*argv, "--run", run, "--result", str(result), *([] if lever is None else ["--lever", lever])]


def spawn(run: str, argv: list[str], workdir: Path, lever: str | None = None) -> dict:
    name = run if lever is None else f"{run}, {lever}"
    result = workdir / f"{name}.json"
    command = [sys.executable, "-m", "bert_imdb.bench", *child_arguments(run, argv, result, lever)]
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


def across_seeds(runs: list[dict]) -> dict:
    """One system's runs, one per seed: the mean of each figure, the spread (standard deviation) of its test
    accuracy and wall time, and the runs themselves."""
    numbers = [k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    summary = {**runs[0], **{k: statistics.fmean(run[k] for run in runs) for k in numbers}}
    for key in ("test_acc", "wall_seconds"):
        summary[f"{key}_sd"] = statistics.stdev(run[key] for run in runs) if len(runs) > 1 else 0.0
    return {**summary, "seeds": runs}


def summarise(run: dict, peaks: dict) -> dict:
    """Rates from a run's counts: throughput, padding, and MFU against the matmul peak measured in this
    run (of the run's dtype) and, for bf16 on a listed GPU, against its datasheet peak."""
    seconds = run["train_seconds"]
    bf16 = run["precision"].startswith("bf16")
    peak = peaks["bf16" if bf16 else "fp32"]
    if bf16 and peaks.get("datasheet_bf16"):
        run["mfu_datasheet"] = run["flops"] / seconds / peaks["datasheet_bf16"]
    if run.get("eval_seconds"):
        run["eval_reviews_per_second"] = run["eval_reviews"] / run["eval_seconds"]
    run["real_tokens_per_second"] = run["real_tokens"] / seconds
    run["padding_fraction"] = 1 - run["real_tokens"] / run["padded_tokens"]
    run["model_flops_per_second"] = run["flops"] / seconds
    run["mfu"] = run["flops"] / seconds / peak
    return run
