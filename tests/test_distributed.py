"""Multi-process runs of the real CLI on the CPU: DDP with the gloo backend, 2 processes on one machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, mlm_args, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_imdb.cli import cli_main

DDP = ["--trainer.devices=2", "--trainer.strategy=ddp"]


def run(workdir: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    done = subprocess.run(
        [sys.executable, "-m", "bert_imdb", *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


def last_scalar(run_folder: Path, tag: str) -> float:
    events = EventAccumulator(str(run_folder))
    events.Reload()
    return events.Scalars(tag)[-1].value


def test_ddp_ranks_train_on_disjoint_samples_and_test_as_one_process(tiny_model, hub_dataset, workdir):
    seen = workdir / "seen"
    args = tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1")
    record = ["--trainer.callbacks+=probes.RecordTrainingSamples", f"--trainer.callbacks.folder={seen}"]
    run(workdir, "fit", *args, *DDP, *record)

    ranks = [json.loads((seen / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 160  # 320 training reviews, half each
    assert not set(ranks[0]) & set(ranks[1]), "a training review went to both ranks"
    assert len(set(ranks[0]) | set(ranks[1])) == 320

    runs = workdir / "lightning_logs" / "tiny"
    last = runs / "version_0" / "checkpoints" / "last.ckpt"
    # 160 reviews per rank in batches of 8: 20 optimizer steps, which the scheduler was sized for.
    assert torch.load(last, weights_only=True)["global_step"] == 20

    run(workdir, "test", *args, *DDP, f"--ckpt_path={last}")
    two_processes = last_scalar(runs / "version_1", "test/acc")
    one_process = cli_main(["test", *args, f"--ckpt_path={last}"]).trainer.callback_metrics["test/acc"]
    assert two_processes == pytest.approx(float(one_process), abs=1e-6)


def test_ddp_pre_training_syncs_perplexity(tiny_model, text_dataset, workdir):
    run(workdir, "fit", *mlm_args(tiny_model, text_dataset), *DDP)
    folder = workdir / "lightning_logs" / "mlm" / "version_0"
    saved = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    # The validation set, masked once, is split between the ranks; the perplexity is over all of it.
    one_process = cli_main(
        [
            "validate",
            *mlm_args(tiny_model, text_dataset),
            f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}",
        ]
    )
    assert last_scalar(folder, "val/perplexity") == pytest.approx(
        float(one_process.trainer.callback_metrics["val/perplexity"]), rel=1e-4
    )
    assert saved["global_step"] > 0


def test_ddp_predict_writes_one_file_in_input_order(tiny_model, hub_dataset, workdir, best_checkpoint):
    reviews = workdir / "reviews.txt"
    words = ["wonderful", "awful", "the plot", "boring", "superb acting", "a film"]
    reviews.write_text("\n".join(f"{words[i % 6]} {words[(i * 7) % 6]} {i}" for i in range(37)) + "\n")
    args = [
        *tiny_args(tiny_model, hub_dataset),
        f"--ckpt_path={best_checkpoint}",
        f"--data.predict_file={reviews}",
    ]
    cli_main(["predict", *args, f"--predictions.output_file={workdir / 'one.csv'}"])
    # Batches of 16: rank 0 gets reviews 1-16 and 33-37, rank 1 reviews 17-32; 2 DataLoader workers each.
    many = ["--data.num_workers=2", f"--predictions.output_file={workdir / 'two.csv'}"]
    run(workdir, "predict", *args, *DDP, *many)

    one, two = ((workdir / name).read_text().splitlines() for name in ("one.csv", "two.csv"))
    assert len(two) == 38 and [row.split(",")[:2] for row in two] == [row.split(",")[:2] for row in one]
    for a, b in zip(one[1:], two[1:], strict=True):
        assert [float(x) for x in a.split(",")[2:]] == pytest.approx(
            [float(x) for x in b.split(",")[2:]], abs=1e-5
        )
    assert not list(workdir.glob("*.partial"))
