import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_imdb.cli import cli_main


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
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1"}
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "bert_imdb", "fit", *args, *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
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


def test_a_killed_run_resumes_to_the_step_and_weights_of_an_uninterrupted_one(
    tiny_model, hub_dataset, workdir
):
    base = tiny_args(
        tiny_model,
        hub_dataset,
        "--trainer.deterministic=true",
        "--data.max_train_samples=64",
        "--data.max_val_samples=32",
    )
    run = Path("lightning_logs") / "tiny" / "version_0"
    cases = [(stop, kill) for stop in STOPS for kill in KILLS]
    folder = {case: workdir / f"{case[0]}-{case[1]}".replace(" ", "_") for case in cases}
    # Two at a time, one thread each: this machine has two cores.
    with ThreadPoolExecutor(2) as pool:

        def each(keys, args_of):
            return dict(zip(keys, pool.map(lambda key: fit(*args_of(key)), keys), strict=True))

        wholes = each(list(STOPS), lambda s: (workdir / s, [*base, *STOPS[s]]))
        killed = each(cases, lambda c: (folder[c], [*base, *STOPS[c[0]], *KILLS[c[1]]]))
        resumed = each(cases, lambda c: (folder[c], [*base, *STOPS[c[0]], "--ckpt_path=last"]))
    for done in wholes.values():
        assert done.returncode == 0, done.stderr[-3000:]
    wrong = []
    for case in cases:
        assert killed[case].returncode == -9, (case, killed[case].stderr[-3000:])
        assert resumed[case].returncode == 0, (case, resumed[case].stderr[-3000:])
        expected = torch.load(workdir / case[0] / run / "checkpoints" / "last.ckpt", weights_only=True)
        got = torch.load(folder[case] / run / "checkpoints" / "last.ckpt", weights_only=True)
        largest = max(
            float((expected["state_dict"][k] - got["state_dict"][k]).abs().max())
            for k in expected["state_dict"]
        )
        val_acc = [last_scalar(f / run, "val/acc") for f in (workdir / case[0], folder[case])]
        if (
            got["global_step"] != expected["global_step"]
            or largest > 1e-5
            or val_acc[0] != pytest.approx(val_acc[1], abs=1e-6)
        ):
            wrong.append(
                f"{case}: step {got['global_step']} (whole run: {expected['global_step']}), "
                f"largest weight difference {largest:.1e}, val/acc {val_acc[1]} vs {val_acc[0]}"
            )
    assert not wrong, "\n".join(wrong)
