import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_imdb.cli import cli_main


@pytest.mark.slow
def test_a_kill_while_writing_last_ckpt_leaves_the_previous_one_loadable(tiny_model, hub_dataset, workdir):
    args = tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=3")
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bert_imdb",
            "fit",
            *args,
            "--trainer.callbacks+=probes.KillDuringCheckpointWrite",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = workdir / "lightning_logs" / "tiny" / "version_0" / "checkpoints"
    assert (checkpoints / "last.ckpt.partial").is_file(), "the kill did not come during a write"
    # The first epoch's last.ckpt, whole: the second write never replaced it.
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)
    steps_per_epoch = saved["global_step"]
    assert saved["epoch"] == 0 and steps_per_epoch > 0

    resumed = cli_main(["fit", *args, "--ckpt_path=last"])
    assert Path(resumed.trainer.log_dir).resolve() == checkpoints.parent
    assert resumed.trainer.global_step == 3 * steps_per_epoch
    assert not (checkpoints / "last.ckpt.partial").exists()


def last_scalar(run_folder: Path, tag: str) -> float:
    events = EventAccumulator(str(run_folder))
    events.Reload()
    return events.Scalars(tag)[-1].value


def fit(cwd: Path, args: list[str], *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "bert_imdb", "fit", *args, *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# 64 training reviews in batches of 8: 8 steps an epoch. Each way of stopping is tried with each place a
# kill can land; every case must end at the step and weights of the same run never stopped.
STOPS = {
    "max_epochs": ["--trainer.max_epochs=3"],  # 24 steps
    "max_steps": ["--trainer.max_epochs=-1", "--trainer.max_steps=20"],  # ends inside the third epoch
    "both": ["--trainer.max_epochs=3", "--trainer.max_steps=24"],  # max_steps is the end of the last epoch
}
KILLS = {
    # last.ckpt every 5 steps, killed at step 11: resumes inside epoch 1 from step 10.
    "mid-epoch": [
        "--last_checkpoint.every_n_train_steps=5",
        "--trainer.callbacks+=probes.KillAtStep",
        "--trainer.callbacks.step=11",
    ],
    # last.ckpt at the end of epoch 0 (step 8), killed one step later: resumes at the start of epoch 1.
    "after an epoch-end checkpoint": ["--trainer.callbacks+=probes.KillAtStep", "--trainer.callbacks.step=9"],
    # last.ckpt every 4 steps: step 8 is also epoch 0's last batch, where it is saved once the epoch (and its
    # validation) is over; killed at step 9, it resumes at the start of epoch 1. Saved straight after that
    # batch instead, the resumed run never trained one epoch (it ended at step 16 of 24).
    "at a step checkpoint on an epoch's last batch": [
        "--last_checkpoint.every_n_train_steps=4",
        "--trainer.callbacks+=probes.KillAtStep",
        "--trainer.callbacks.step=9",
    ],
    # Killed while validating epoch 1: resumes from step 15, trains step 16, then validates again.
    "during validation": [
        "--last_checkpoint.every_n_train_steps=5",
        "--trainer.callbacks+=probes.KillDuringValidation",
        "--trainer.callbacks.epoch=1",
    ],
}


# One case per way of killing, the ways of stopping taken in turn: every kill and every stop runs through the
# real CLI with a real SIGKILL. Every pairing of them (and many more plans) is drawn at the loop level by
# tests/test_resume_scenarios.py's generated scenarios, against uninterrupted runs, in milliseconds.
CASES = [
    ("max_steps", "mid-epoch"),
    ("both", "after an epoch-end checkpoint"),
    ("max_epochs", "at a step checkpoint on an epoch's last batch"),
    ("max_steps", "during validation"),
]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory):
    """The uninterrupted run of each way of stopping, fitted once for the module's cases that need it."""
    runs = {}

    def run(hub_dataset: str, stop: str) -> Path:
        if stop not in runs:
            folder = tmp_path_factory.mktemp(stop)
            with contextlib.chdir(folder):  # in this process: only the killed run needs one of its own
                cli_main(["fit", *killable_args(tiny_model, hub_dataset), *STOPS[stop]])
            runs[stop] = folder
        return runs[stop]

    return run


def killable_args(tiny_model: str, hub_dataset: str) -> list[str]:
    return tiny_args(
        tiny_model,
        hub_dataset,
        "--trainer.deterministic=true",
        "--data.max_train_samples=64",
        "--data.max_val_samples=32",
    )


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "kill"), CASES, ids=[f"{stop}, killed {kill}" for stop, kill in CASES])
def test_a_killed_run_resumes_to_the_step_and_weights_of_an_uninterrupted_one(
    tiny_model, hub_dataset, workdir, uninterrupted, stop, kill
):
    base = [*killable_args(tiny_model, hub_dataset), *STOPS[stop]]
    run = Path("lightning_logs") / "tiny" / "version_0"
    whole = uninterrupted(hub_dataset, stop)
    killed = fit(workdir, [*base, *KILLS[kill]])
    assert killed.returncode == -9, killed.stderr[-3000:]
    cli_main(["fit", *base, "--ckpt_path=last"])  # in this process, whose random state the kill did not see
    expected = torch.load(whole / run / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(workdir / run / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == expected["global_step"]
    for key, value in expected["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][key], value, rtol=0, atol=1e-5, msg=key)
    assert last_scalar(workdir / run, "val/acc") == pytest.approx(
        last_scalar(whole / run, "val/acc"), abs=1e-6
    )
