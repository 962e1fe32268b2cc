"""Lightning's SLURM auto-requeue, without a cluster: the environment of a single-task job, a stub scontrol
that records its arguments, and a real SIGUSR1 sent to a running fit."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, tiny_args

from bert_imdb.cli import cli_main

SLURM_JOB = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "bert_imdb",
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_NODELIST": "localhost",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_sigusr1_checkpoints_requeues_and_the_rerun_resumes(tiny_model, hub_dataset, workdir):
    bin_dir, calls = workdir / "bin", workdir / "scontrol.calls"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    scontrol.chmod(0o755)
    env = {
        **os.environ,
        **SLURM_JOB,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "tests"),
    }
    marker = workdir / "training"
    # As the sbatch templates do: one run folder per job id, which a requeued job finds again.
    args = [
        "fit",
        *tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=3"),
        "--trainer.logger.init_args.version=job4242",
        "--trainer.callbacks+=probes.MarkTraining",
        f"--trainer.callbacks.path={marker}",
    ]
    command = [sys.executable, "-m", "bert_imdb", *args]

    first = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: marker.exists() or first.poll() is not None)
    assert first.poll() is None, "the fit ended before it could be signalled"
    first.send_signal(signal.SIGUSR1)
    hpc = workdir / "hpc_ckpt_1.ckpt"
    wait_for(lambda: calls.exists() and hpc.exists())
    first.kill()  # SLURM ends the job once it is requeued
    first.wait()

    assert calls.read_text().split() == ["requeue", "4242"]
    saved_step = torch.load(hpc, weights_only=True)["global_step"]
    assert saved_step >= 3

    marker.unlink()
    second = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert int(marker.with_suffix(".start").read_text()) == saved_step, "the rerun did not resume"
    run = workdir / "lightning_logs" / "tiny" / "job4242"
    assert {"config.yaml", "config-1.yaml"} <= {p.name for p in run.iterdir()}
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] > saved_step


@pytest.mark.parametrize("template", ["one-node.sbatch", "multi-node.sbatch"])
def test_sbatch_templates_run_a_command_the_cli_parses(template, monkeypatch):
    script = (REPO / "slurm" / template).read_text()
    directives = [line.split()[1] for line in script.splitlines() if line.startswith("#SBATCH")]
    assert {"--signal=SIGUSR1@90", "--requeue"} <= set(directives)
    srun = script.replace("\\\n", " ").split("\nsrun ", 1)[1].splitlines()[0]
    nodes = next(d for d in directives if d.startswith("--nodes=")).split("=")[1]
    tasks = next(d for d in directives if d.startswith("--ntasks-per-node=")).split("=")[1]
    variables = {
        "SLURM_JOB_NUM_NODES": nodes,
        "SLURM_NTASKS_PER_NODE": tasks,
        "SLURM_JOB_NAME": "bert_imdb",
        "SLURM_JOB_ID": "7",
        "RUN": "runs/bert_imdb-7",
        "CONFIG": "configs/full.yaml",
    }
    words = [re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], w) for w in shlex.split(srun)]
    assert words[:4] == ["python", "-m", "bert_imdb", "fit"]
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_:
        cli_main([*words[3:], "--print_config"])
    assert exit_.value.code == 0
