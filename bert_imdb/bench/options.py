"""The benchmark's command line: which comparison or measurement to run, and on what."""

import argparse

from bert_imdb.bench.architectures import FAMILIES, SIZES

DESCRIPTION = (
    "The seed recipe, the same Trainer tuned, and bert_imdb, fine-tuned back to back, side by side (or one of "
    "the measurements below)."
)
RUNS = ("peer", "tuned_peer", "bert_imdb")
# Sized for an AVX2 CPU without bf16, 2 cores: 400/200 took 12:45 there, mostly the peer.
QUICK = {"train_samples": 200, "test_samples": 100, "epochs": 1, "seeds": [42]}
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
    parser = argparse.ArgumentParser(prog="python -m bert_imdb.bench", description=DESCRIPTION)
    parser.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2", help="Hub id or local folder")
    parser.add_argument("--dataset", default="../shared/imdb", help="as data.dataset")
    parser.add_argument("--train-samples", type=int, default=1000, help="training reviews")
    parser.add_argument("--test-samples", type=int, default=500, help="test (and validation) reviews")
    # One epoch of 1,000 reviews: every system learns (about 0.80), and the seeds say by how much they differ.
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="training reviews per step")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="Trainer's default")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per review, at most")
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=RUNS,
        default=list(RUNS),
        help="the comparison's systems (the seed peer, fp32 and padded to --max-length, takes longest on a CPU)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[42, 43, 44],
        help="the comparison runs each system once per seed (reviews drawn, shuffling, the new head's "
        "weights) and reports the mean and spread",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        help="the seed of a single run: the measurements below, and the random weights of --shape bert-base",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK['train_samples']} training and {QUICK['test_samples']} test reviews, 1 epoch, one seed "
        "(under 10 minutes on 2 CPU cores)",
    )
    parser.add_argument(
        "--levers",
        nargs="*",
        choices=[*LEVERS, *MLM_LEVERS],
        metavar="LEVER",
        help="instead of the comparison: bert_imdb's defaults, then each speed lever turned the other way "
        f"(all, or those named: {', '.join(repr(name) for name in LEVERS)}; with --mlm, of "
        f"{', '.join(repr(name) for name in MLM_LEVERS)}), --lever-steps training steps and one validation "
        "each",
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
    parser.add_argument(
        "--layers",
        type=int,
        default=12,
        help="with --shape bert-base: its encoder layers (bert-base has 12; gpu.sh's CPU rehearsal builds 1)",
    )
    parser.add_argument(
        "--matmul-size",
        type=int,
        help="measure the matmul peak at this n x n size only (the default tries three and keeps the best): "
        "a rehearsal's shortcut, whose MFU means nothing",
    )
    parser.add_argument(
        "--architectures",
        nargs="*",
        choices=list(FAMILIES),
        metavar="FAMILY",
        help="instead of the comparison: bert_imdb and the tuned peer on random models of each encoder family "
        f"(all, or those named: {', '.join(FAMILIES)}) at each of --sizes, --lever-steps training steps each "
        "(bert_imdb/bench/architectures.py)",
    )
    parser.add_argument(
        "--sizes", nargs="+", choices=SIZES, default=list(SIZES), help="with --architectures: model sizes"
    )
    parser.add_argument("--output-dir", default="benchmarks/results", help="where the JSON and Markdown go")
    # The runs are this module again, in child processes.
    parser.add_argument("--run", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--lever", choices=[*LEVERS, *MLM_LEVERS], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    other_mode = set(args.levers or []) - set(MLM_LEVERS if args.mlm else LEVERS)
    if other_mode:
        parser.error(f"{', '.join(map(repr, sorted(other_mode)))}: a lever of the other mode (--mlm or not)")
    if args.quick:
        vars(args).update(QUICK)
    if args.architectures is not None:
        # Both runs train the same --lever-steps steps, then evaluate a few batches.
        steps = {"train_samples": args.lever_steps * args.batch_size, "test_samples": 4 * args.batch_size}
        vars(args).update(**steps, epochs=1)
    return args
