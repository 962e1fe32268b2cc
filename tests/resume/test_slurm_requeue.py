"""SLURM: real jobs of slurm/one-node.sbatch (one node, two tasks) and slurm/multi-node.sbatch (two nodes, one
task each) on the two-node SLURM `.ci/start-slurm` brings up on one machine, requeued by SLURM's own warning
signal; and, without a cluster, a single-task job's environment with a stub scontrol."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, SLURM_JOB, tiny_args
from lightning.pytorch.plugins.environments import SLURMEnvironment

from bert_imdb.cli import cli_main
from bert_imdb.resume.slurm_requeue import SlurmRequeue


def wait_for(condition, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
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
    run = workdir / "lightning_logs" / "tiny" / "job4242"
    hpc = run / "checkpoints" / "hpc_ckpt_1.ckpt"  # in the run's folder, not the working directory
    wait_for(lambda: calls.exists() and hpc.exists())
    first.kill()  # SLURM ends the job once it is requeued
    first.wait(timeout=300)

    assert calls.read_text().split() == ["requeue", "4242"]
    saved_step = torch.load(hpc, weights_only=True)["global_step"]
    assert saved_step >= 3

    marker.unlink()
    second = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert int(marker.with_suffix(".start").read_text()) == saved_step, "the rerun did not resume"
    assert {"config.yaml", "config-1.yaml"} <= {p.name for p in run.iterdir()}
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] > saved_step


class Trainer:
    """What SlurmRequeue reads of a one-process trainer mid-epoch."""

    world_size, is_last_batch = 1, False

    def __init__(self, accumulate_grad_batches: int):
        self.accumulate_grad_batches = accumulate_grad_batches


@pytest.mark.parametrize(
    ("accumulate", "signalled_at", "saved_at"), [(1, 0, 0), (2, 0, 1), (4, 1, 3), (4, 3, 3)]
)
def test_the_requeue_saves_only_where_an_optimizer_step_was_taken(
    monkeypatch, accumulate, signalled_at, saved_at
):
    """Accumulated gradients are not in checkpoints: saved inside an accumulation window, the window's first
    micro-batches would never train after the requeue."""
    monkeypatch.setattr(SLURMEnvironment, "detect", staticmethod(lambda: True))
    # No validation in this epoch (a save where one follows waits for it: tests/test_resume_scenarios.py).
    monkeypatch.setattr("bert_imdb.resume.safe_stop.validation_follows", lambda trainer: False)
    requeue, saves = SlurmRequeue(), []
    monkeypatch.setattr(requeue, "_save_and_requeue", lambda trainer: saves.append(batch_idx))
    trainer = Trainer(accumulate)
    for batch_idx in range(8):
        if batch_idx == signalled_at:
            requeue._note(signal.SIGUSR1, None)
        requeue.on_train_batch_end(trainer, None, None, None, batch_idx)
    assert saves == [saved_at]


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
    # A task that ends in an error stops the others (one that waited too long for another, say).
    options, words = words[: words.index("python")], words[words.index("python") :]
    assert options == ["--kill-on-bad-exit=1"]
    assert words[:4] == ["python", "-m", "bert_imdb", "fit"]
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_:
        cli_main([*words[3:], "--print_config"])
    assert exit_.value.code == 0


def test_a_requeue_checkpoint_is_resumed_by_its_own_job_only_and_through_the_settings_check(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    """Lightning resumes any hpc_ckpt_<N>.ckpt it finds in the working directory: a new job started there
    trained on another job's run, and a config edited between two requeues was trained on unchecked
    (ee75b2f). The requeue checkpoint now lives in its run's folder and records its job."""
    for name, value in SLURM_JOB.items():
        monkeypatch.setenv(name, value)

    def fit(max_steps: int, *more: str):
        return cli_main(
            ["fit", *tiny_args(tiny_model, hub_dataset, f"--trainer.max_steps={max_steps}"), *more]
        )

    first = fit(3)  # job 4242: its checkpoint, as its requeue leaves it (a last.ckpt records the job too)
    checkpoints = Path(first.trainer.log_dir) / "checkpoints"
    hpc = checkpoints / "hpc_ckpt_1.ckpt"
    (checkpoints / "last.ckpt").rename(hpc)

    monkeypatch.setenv("SLURM_JOB_ID", "5555")  # another job, in the same folder: a run of its own
    with pytest.warns(UserWarning) as said:
        other = fit(2)
    assert other.trainer.ckpt_path is None and other.trainer.global_step == 2
    assert Path(other.trainer.log_dir).name == "version_1"
    expected = (
        f"{hpc} is SLURM job 4242's requeue checkpoint, and this is job 5555: this fit starts a new run; "
        f"pass --ckpt_path {hpc} to continue that one instead"
    )
    assert expected in [str(w.message) for w in said], [str(w.message) for w in said]

    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # its own requeue, its config edited since: refused
    with pytest.raises(SystemExit) as refused:
        fit(6, "--model.learning_rate=0.003")
    text = str(refused.value.code)
    assert "model.learning_rate=0.002" in text and "model.learning_rate=0.003" in text, text
    assert "\n" not in text
    resumed = fit(6)  # as it was: continued from its checkpoint, in its own run folder
    assert Path(resumed.trainer.ckpt_path).resolve() == hpc.resolve() and resumed.trainer.global_step == 6
    assert Path(resumed.trainer.log_dir).name == "version_0"


def test_another_jobs_requeue_checkpoint_where_earlier_versions_wrote_it_is_not_resumed(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    """Lightning still resumes any hpc_ckpt_<N>.ckpt in the working directory (default_root_dir), where
    earlier versions wrote them: a new job started there trained on another job's run (ee75b2f)."""
    for name, value in SLURM_JOB.items():
        monkeypatch.setenv(name, value)

    def fit(max_steps: int):
        return cli_main(["fit", *tiny_args(tiny_model, hub_dataset, f"--trainer.max_steps={max_steps}")])

    first = fit(3)  # job 4242: its checkpoint, as its requeue would have left it
    (Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt").rename(workdir / "hpc_ckpt_1.ckpt")
    monkeypatch.setenv("SLURM_JOB_ID", "5555")
    with pytest.raises(SystemExit) as refused:
        fit(6)
    text = str(refused.value.code)
    assert "hpc_ckpt_1.ckpt is SLURM job 4242's requeue checkpoint, and this is job 5555" in text, text
    assert "\n" not in text
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # its own requeue continues it
    resumed = fit(6)
    assert Path(resumed.trainer.ckpt_path).name == "hpc_ckpt_1.ckpt" and resumed.trainer.global_step == 6


def scontrol_job(job: str) -> dict[str, str]:
    shown = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", shown))


def _idle_nodes(wait: float = 90) -> int:
    """SLURM's idle nodes, waiting up to `wait` seconds for two: just after .ci/start-slurm they are still
    registering, and after a job they are completing (a CI run that started with these tests skipped one)."""
    deadline = time.monotonic() + wait
    while True:
        shown = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%t"], capture_output=True, text=True, timeout=60
        )
        idle = shown.stdout.split().count("idle") if shown.returncode == 0 else 0
        if idle >= 2 or time.monotonic() > deadline:
            return idle
        time.sleep(2)


class Uninterrupted:
    """The jobs' run never stopped, for comparison: 2 processes outside SLURM (the second forked from the
    first), fitted once for both jobs, which train the same run."""

    def __init__(self, folder: Path):
        self.folder, self.process = folder, None

    def start(self, settings: dict) -> None:
        if self.process is not None:
            return
        (self.folder / "whole.yaml").write_text(yaml.safe_dump(settings))
        command = ["fit", "--config=whole.yaml", "--trainer.devices=2", "--trainer.strategy=ddp_fork"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bert_imdb", *command],
            cwd=self.folder,
            env={**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def last_checkpoint(self) -> Path:
        try:
            assert self.process.wait(timeout=240) == 0, self.process.stderr.read()[-3000:]
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        return self.folder / "lightning_logs" / "tiny" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Uninterrupted:
    return Uninterrupted(tmp_path_factory.mktemp("uninterrupted-job"))


@pytest.mark.slow
# One at a time, on one worker: both jobs need SLURM's two nodes.
@pytest.mark.xdist_group("slurm")
@pytest.mark.skipif(
    shutil.which("sbatch") is None, reason="no sbatch here: run .ci/start-slurm (as root) first"
)
@pytest.mark.parametrize(
    ("template", "layout"),
    [
        ("one-node.sbatch", ["--nodes=1", "--ntasks-per-node=2"]),
        ("multi-node.sbatch", ["--nodes=2", "--ntasks-per-node=1"]),
    ],
    ids=["one node, two tasks", "two nodes, one task each"],
)
def test_a_real_slurm_job_requeues_itself_on_its_warning_and_resumes_exactly(
    tiny_model, hub_dataset, workdir, uninterrupted, template, layout
):
    if template == "multi-node.sbatch" and _idle_nodes() < 2:
        pytest.skip("this SLURM has fewer than 2 idle nodes: .ci/start-slurm (as root) brings up two")
    # 320 training reviews over 2 tasks in batches of 8: 20 steps an epoch.
    max_steps = 70
    config = workdir / "tiny.yaml"
    settings = {
        "seed_everything": 42,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": max_steps,
            "deterministic": True,
            "enable_progress_bar": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "lightning_logs", "name": "tiny"},
            },
            # Only in the job's first run: it is still training when the signal comes.
            "callbacks": [
                {
                    "class_path": "probes.SlowFirstRun",
                    "init_args": {"seconds": 1.5, "marker": str(workdir / "training")},
                }
            ],
        },
        "model": {"model_name_or_path": tiny_model, "learning_rate": 0.002},
        "data": {"dataset": hub_dataset, "max_length": 64, "batch_size": 8, "val_fraction": 0.2},
    }
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1", "CONFIG": str(config)}
    (workdir / ".venv").symlink_to(sys.prefix)  # the template activates .venv in its working folder
    (workdir / "runs").mkdir()
    # The template as it is, with CPU overrides: no GPUs, 2 tasks (on one node or one on each of two), 5
    # minutes, brought down below once the job trains; the first run sleeps between steps to still be
    # training when the signal comes. Two processes either way: the same ranks, the same batches.
    job = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--gres=none",
            *layout,
            "--cpus-per-task=1",
            "--mem=4G",
            "--time=5",
            f"--chdir={workdir}",
            f"--output={workdir}/%x-%j.out",
            str(REPO / "slurm" / template),
        ],
        env={**env, "SBATCH_EXPORT": "ALL"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # SLURM's SIGUSR1 comes 90 s before the time limit, and may come up to a minute early: a limit set at
    # submission would send it while the processes were still starting (and it killed them). Once the job
    # trains, its limit is brought to the first whole minute (SLURM keeps no seconds) at least 60 s from
    # now: the signal is due within 30 s, or already, and comes at slurmctld's next look at time limits.
    wait_for(lambda: (workdir / "training").exists(), seconds=120)
    # Started once the job trains: both starting at once on 2 cores slows the job, and its time limit, in
    # whole minutes, can be the next one.
    uninterrupted.start(settings)
    hours, minutes, seconds = map(int, scontrol_job(job)["RunTime"].split(":"))
    limit = -(-(3600 * hours + 60 * minutes + seconds + 60) // 60)  # minutes
    subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={limit}"], check=True, timeout=60)
    wait_for(lambda: scontrol_job(job).get("Restarts") == "1", seconds=180)
    # SLURM holds a requeued job for two minutes before it may start again; no need to wait for that here.
    # The rerun gets its time back: a limit 100 s after its start would signal it again.
    wait_for(lambda: scontrol_job(job)["JobState"] == "PENDING", seconds=60)
    ended = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")

    def start_the_rerun() -> None:
        # Until the last run has left its nodes, their slurmd still holds the job's revoked credential, and
        # a rerun started there at once is killed ("Job credential revoked", seen in CI): wait for them,
        # and for the next second, since slurmd compares the new credential's time with the revocation's
        # in whole seconds (a rerun released in the second of the requeue was killed: seen in CI).
        _idle_nodes()
        time.sleep(2)
        # Held by requeuehold, if it was.
        subprocess.run(["scontrol", "release", job], capture_output=True, timeout=60)
        subprocess.run(
            ["scontrol", "update", f"JobId={job}", "StartTime=now", "TimeLimit=5"], check=True, timeout=60
        )
        wait_for(lambda: scontrol_job(job)["JobState"] in ended, seconds=240)

    restarts = "1"
    if template == "one-node.sbatch":
        # The config edited between two requeues: the rerun refuses it in one line and trains nothing
        # (ee75b2f trained on). Put back, and the job requeued once more, it resumes as below.
        config.write_text(
            yaml.safe_dump({**settings, "model": {**settings["model"], "learning_rate": 0.003}})
        )
        start_the_rerun()
        log = (workdir / f"bert_imdb-{job}.out").read_text()
        assert scontrol_job(job)["JobState"] == "FAILED", log[-3000:]
        assert "model.learning_rate=0.002, this run has model.learning_rate=0.003" in log, log[-3000:]
        assert "Traceback" not in log
        config.write_text(yaml.safe_dump(settings))
        # Held: a failed job requeued is started at once, on nodes whose slurmd still holds its revoked
        # credential (and killed: seen).
        subprocess.run(["scontrol", "requeuehold", job], check=True, timeout=60)
        wait_for(lambda: scontrol_job(job)["JobState"] == "PENDING", seconds=60)
        restarts = "2"
    start_the_rerun()

    log = (workdir / f"bert_imdb-{job}.out").read_text()
    shown = scontrol_job(job)
    assert (shown["JobState"], shown["Restarts"]) == ("COMPLETED", restarts), log[-3000:]
    folder = workdir / "runs" / f"bert_imdb-{job}" / "tiny" / "run"
    hpc = torch.load(folder / "checkpoints" / "hpc_ckpt_1.ckpt", weights_only=True)
    assert 2 < hpc["global_step"] < max_steps
    hpc_path = folder.relative_to(workdir) / "checkpoints" / "hpc_ckpt_1.ckpt"
    assert f"Restoring states from the checkpoint path at {hpc_path}" in log
    assert "Traceback" not in log and "Error" not in log
    assert {"config.yaml", "config-1.yaml"} <= {p.name for p in folder.iterdir()}
    expected = torch.load(uninterrupted.last_checkpoint(), weights_only=True)
    got = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert got["global_step"] == expected["global_step"] == max_steps
    largest = max(
        float((expected["state_dict"][k] - got["state_dict"][k]).abs().max()) for k in expected["state_dict"]
    )
    assert largest < 1e-5, f"the requeued job ended elsewhere (largest difference {largest:.2e})"
