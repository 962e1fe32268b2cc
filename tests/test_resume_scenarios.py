"""Generated resume scenarios, each checked against an uninterrupted run of the same plan.

Two levels. The loop level runs the project's resume machinery (ExactResumeFitLoop, LastCheckpoint,
ExactResume) on a toy module in milliseconds, so many scenarios fit in the suite: plans of max_epochs,
max_steps or both, gradient accumulation, batch sizes, dataset sizes, shuffled or ordered data, a kill
after any checkpoint (end of epoch, every N steps, the end of a fit stopped by max_steps) or SLURM's
warning signal during any batch (SlurmRequeue's checkpoint), and a continuation with the same plan or a
larger max_steps or max_epochs. The CLI level runs a few scenarios
through `bert-imdb fit` on the tiny BERT, one per loader kind (length-grouped, token-budget, random
batches, masked LM with 0 and 2 DataLoader workers).

Checked: the exact sequence of (epoch, example) trained, the final step and epoch, and the weights.
`pytest --resume-scenarios N --resume-seed S` runs more, with any seed; every failure found stays below
as a named case.
"""

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import lightning as L
import pytest
import torch
from conftest import REPO, SLURM_JOB, mlm_args, tiny_args
from lightning.pytorch.plugins.environments import SLURMEnvironment
from torch import nn
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

from bert_imdb.callbacks.exact_resume import ExactResume
from bert_imdb.callbacks.last_checkpoint import LastCheckpoint
from bert_imdb.callbacks.slurm_requeue import SlurmRequeue
from bert_imdb.cli import cli_main
from bert_imdb.workarounds.fit_loop import ExactResumeFitLoop


@dataclass(frozen=True)
class Plan:
    max_epochs: int
    max_steps: int = -1


@dataclass(frozen=True)
class Scenario:
    examples: int
    batch_size: int
    accumulate: int
    shuffle: bool
    first: Plan  # the run that is stopped
    then: Plan  # its continuation, and the uninterrupted run it must equal
    every_n_steps: int  # 0: last.ckpt at epochs' ends only
    kill_after: int  # which of the first run's checkpoints it is killed after (-1: its last)
    # Under SLURM, its warning signal arrives during this training batch of the first run (counted from 0):
    # SlurmRequeue saves hpc_ckpt_1.ckpt at the next optimizer step and stops, and the run resumes from it.
    slurm_signal_at: int | None = None


class Recorder(L.LightningModule):
    """Records (epoch, example) of every example it trains on. Its loss draws from torch's generator, as
    dropout does, so the weights depend on the random state being resumed too."""

    def __init__(self, examples: int, batch_size: int, shuffle: bool, signal_at: int | None = None):
        super().__init__()
        self.examples, self.batch_size, self.shuffle = examples, batch_size, shuffle
        self.layer = nn.Linear(1, 1)
        self.seen: list[tuple[int, int, int]] = []  # (global step, epoch, example)
        self.signal_at, self.batches = signal_at, 0

    def training_step(self, batch, batch_idx):
        self.seen += [(self.global_step, self.current_epoch, item) for item in batch.tolist()]
        if self.batches == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR1)  # as SLURM sends it, to the task's process
        self.batches += 1
        noise = torch.rand(len(batch))
        return (self.layer(batch.float().view(-1, 1)).squeeze(1) * noise).pow(2).mean()

    def configure_optimizers(self):
        # Sized as the project's optimizer is, from Lightning's estimate (which builds the loader).
        assert self.trainer.estimated_stepping_batches > 0
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        items = list(range(self.examples))
        sampler = StatefulDistributedSampler(items, num_replicas=1, rank=0, shuffle=self.shuffle, seed=7)
        return StatefulDataLoader(items, batch_size=self.batch_size, sampler=sampler)


def fit(
    scenario: Scenario,
    plan: Plan,
    folder: Path,
    ckpt_path: Path | None = None,
    every_n: int = 0,
    signal_at: int | None = None,
):
    torch.manual_seed(0)
    slurm = [SlurmRequeue()] if signal_at is not None else []
    last = LastCheckpoint(
        dirpath=folder,
        filename="{step}",
        monitor=None,
        save_top_k=-1,
        every_n_train_steps=every_n,
        enable_version_counter=False,
    )
    trainer = L.Trainer(
        max_epochs=plan.max_epochs,
        max_steps=plan.max_steps,
        accumulate_grad_batches=scenario.accumulate,
        callbacks=[last, ExactResume(), *slurm],
        # Under SLURM, Lightning installs its requeue handler, which SlurmRequeue replaces.
        plugins=[SLURMEnvironment(auto_requeue=True)] if slurm else None,
        default_root_dir=folder,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    ExactResumeFitLoop.install(trainer)
    module = Recorder(scenario.examples, scenario.batch_size, scenario.shuffle, signal_at)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    with slurm_job(folder) if slurm else contextlib.nullcontext():
        try:
            trainer.fit(module, ckpt_path=ckpt_path)
        finally:  # SlurmRequeue ignores SIGTERM once it has saved: not in this test process afterwards
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    return trainer, module


@contextlib.contextmanager
def slurm_job(folder: Path):
    """A SLURM batch job's environment, with an `scontrol` that records the requeue instead of doing it."""
    stub = folder / "bin" / "scontrol"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text(f'#!/bin/sh\necho "$@" >> {folder / "scontrol.calls"}\n')
    stub.chmod(0o755)
    path = f"{stub.parent}{os.pathsep}{os.environ['PATH']}"
    with mock.patch.dict(os.environ, {**SLURM_JOB, "PATH": path}):
        yield


def check(scenario: Scenario, tmp_path: Path) -> None:
    reference, ref_module = fit(scenario, scenario.then, tmp_path / "reference")
    signal_at = scenario.slurm_signal_at
    _, first_module = fit(
        scenario, scenario.first, tmp_path / "first", every_n=scenario.every_n_steps, signal_at=signal_at
    )
    if signal_at is None:
        checkpoints = sorted((tmp_path / "first").glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
        assert checkpoints, "the first run wrote no checkpoint"
        killed_at = checkpoints[scenario.kill_after % len(checkpoints)]
    else:  # the requeued job resumes from the checkpoint SlurmRequeue saved, if the run lasted that long
        killed_at = tmp_path / "first" / "hpc_ckpt_1.ckpt"
        if not killed_at.exists():
            assert signal_at >= first_module.batches, "signalled while training, but saved nothing"
            return
        assert (tmp_path / "first" / "scontrol.calls").read_text().split() == ["requeue", "4242"]
    step = torch.load(killed_at, weights_only=True)["global_step"]
    resumed, module = fit(scenario, scenario.then, tmp_path / "resumed", ckpt_path=killed_at)

    trained = [(epoch, item) for s, epoch, item in first_module.seen if s < step]
    trained += [(epoch, item) for _, epoch, item in module.seen]
    expected = [(epoch, item) for s, epoch, item in ref_module.seen if s < max(reference.global_step, step)]
    assert trained == expected, f"killed after {killed_at.name}: other batches than the uninterrupted run"
    assert resumed.global_step == max(reference.global_step, step)
    if resumed.global_step == reference.global_step:
        for mine, theirs in zip(module.parameters(), ref_module.parameters(), strict=True):
            assert torch.allclose(mine, theirs, atol=1e-6)


def generated(seed: int, count: int) -> list[Scenario]:
    rng = random.Random(seed)
    scenarios = []
    for _ in range(count):
        examples, batch_size, accumulate = rng.randint(3, 12), rng.randint(1, 3), rng.randint(1, 3)
        steps_per_epoch = math.ceil(math.ceil(examples / batch_size) / accumulate)
        first = Plan(rng.randint(1, 3), rng.choice([-1, rng.randint(1, 3 * steps_per_epoch)]))
        longer = rng.choice(["same", "max_steps", "max_epochs"])
        reached = first.max_epochs * steps_per_epoch
        reached = reached if first.max_steps == -1 else min(reached, first.max_steps)
        if longer == "max_steps":
            then = Plan(first.max_epochs + 1, rng.randint(reached, 4 * steps_per_epoch + reached))
        elif longer == "max_epochs":
            then = Plan(first.max_epochs + rng.randint(1, 2), first.max_steps)
        else:
            then = first
        every_n = rng.choice([0, rng.randint(1, 5)])
        # A quarter of the scenarios are stopped by SLURM's signal, during any batch the first run trains.
        batches = math.ceil(examples / batch_size) * first.max_epochs
        signal_at = rng.randrange(batches) if rng.random() < 0.25 else None
        scenarios.append(
            Scenario(
                examples,
                batch_size,
                accumulate,
                rng.random() < 0.5,
                first,
                then,
                every_n,
                rng.randint(-3, 5),
                signal_at,
            )
        )
    return scenarios


# Failures found, kept as named cases (each was wrong before ExactResumeFitLoop reopened an epoch that
# stopped before its data ran out).
NAMED = {
    # The issue's: a run stopped at step 12 of 8-batch epochs, continued to 20: the 4 batches left in
    # epoch 1 were skipped.
    "max_steps raised after a max_steps stop": Scenario(8, 1, 1, False, Plan(3, 12), Plan(3, 20), 0, -1),
    # ... and continued with max_epochs 2, max_steps 14: nothing trained, "max_epochs=2 reached".
    "max_epochs lowered, max_steps raised": Scenario(8, 1, 1, False, Plan(3, 12), Plan(2, 14), 0, -1),
    "max_steps dropped after a max_steps stop": Scenario(8, 1, 1, True, Plan(3, 12), Plan(3), 0, -1),
    "max_epochs raised after the last epoch": Scenario(8, 1, 1, True, Plan(1), Plan(3), 0, -1),
    "a stop at an epoch's last step, raised": Scenario(8, 2, 2, True, Plan(3, 4), Plan(3, 9), 0, -1),
    "accumulation, killed mid-epoch": Scenario(11, 2, 3, True, Plan(3), Plan(3), 1, 1),
    # SLURM's signal inside an accumulation window: saved at the window's end, not where it came.
    "SLURM signal inside an accumulation window": Scenario(11, 2, 3, True, Plan(3), Plan(3), 0, -1, 4),
    "SLURM signal on an epoch's last batch": Scenario(8, 2, 1, False, Plan(2), Plan(2), 0, -1, 3),
    "SLURM signal, then max_steps raised": Scenario(9, 1, 2, True, Plan(2, 6), Plan(3, 12), 0, -1, 7),
}


@pytest.mark.parametrize("scenario", list(NAMED.values()), ids=list(NAMED))
def test_named_resume_cases(scenario, tmp_path):
    check(scenario, tmp_path)


def test_generated_resume_scenarios(request, tmp_path):
    seed, count = request.config.getoption("resume_seed"), request.config.getoption("resume_scenarios")
    for n, scenario in enumerate(generated(seed, count)):
        try:
            check(scenario, tmp_path / str(n))
        except AssertionError as err:
            raise AssertionError(f"seed {seed}, scenario {n}: {scenario}: {err}") from err


# The CLI level: one scenario per loader kind, through the real command on the tiny BERT.
def killed_at_step(step: int) -> list[str]:
    return ["--trainer.callbacks+=probes.KillAtStep", f"--trainer.callbacks.step={step}"]


KILLED_AT_STEP_6 = killed_at_step(6)
# Validations at steps 10, 20, ...: none improves val/acc by 10, so an uninterrupted run stops at step 20.
STOPS_EARLY_AT_STEP_20 = [
    "--early_stopping.patience=1",
    "--early_stopping.min_delta=10",
    "--trainer.val_check_interval=10",
    "--trainer.max_epochs=3",
]


def batches(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("task", "extra", "first", "then"),
    [
        ("classifier", [], ["--trainer.max_steps=7"], ["--trainer.max_steps=16"]),
        ("classifier", ["--data.max_tokens=256"], ["--trainer.max_epochs=1"], ["--trainer.max_epochs=2"]),
        (
            "classifier",
            ["--data.group_by_length=false"],
            ["--trainer.max_steps=11"],
            ["--trainer.max_steps=-1"],
        ),
        ("mlm", ["--data.num_workers=2"], ["--trainer.max_steps=5"], ["--trainer.max_steps=12"]),
        ("mlm", ["--last_checkpoint.every_n_train_steps=4"], KILLED_AT_STEP_6, []),
        # Killed after the first validation: the resumed run must remember its best score to stop at 20.
        (
            "classifier",
            [*STOPS_EARLY_AT_STEP_20, "--last_checkpoint.every_n_train_steps=4"],
            killed_at_step(14),
            [],
        ),
    ],
    ids=[
        "length-grouped, max_steps raised",
        "token budget, max_epochs raised",
        "random batches, max_steps lifted",
        "MLM with 2 workers, max_steps raised",
        "MLM, killed after a step checkpoint",
        "early stopping, killed between two validations",
    ],
)
def test_cli_continuations_train_what_an_uninterrupted_run_does(
    tiny_model, hub_dataset, text_dataset, workdir, task, extra, first, then
):
    """The continuation trains the uninterrupted run's batches (tokens, masks, labels) at its steps and
    learning rates: a longer plan re-plans the schedule (warmup and decay over the new total), from the step
    the run stopped at. Where the plan is the same, the weights are the uninterrupted run's too."""

    killed = any("KillAtStep" in arg for arg in first)

    def fit(name: str, *more: str):
        record = [
            "--trainer.callbacks+=probes.RecordTrainedBatches",
            f"--trainer.callbacks.path={name}.jsonl",
        ]
        if task == "mlm":
            args = mlm_args(tiny_model, text_dataset, "--trainer.max_epochs=2", *extra, *more, *record)
        else:
            args = tiny_args(tiny_model, hub_dataset, *extra, *more, *record)
        if killed and name == "stopped":  # SIGKILL: in a process of its own
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
            }
            process = subprocess.run(
                [sys.executable, "-m", "bert_imdb", "fit", *args], env=env, capture_output=True
            )
            assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
            return None
        return cli_main(["fit", *args])

    reference = fit("reference", *then, "--trainer.logger.init_args.version=reference")
    fit("stopped", *first, "--trainer.logger.init_args.version=stopped")
    last = (
        workdir
        / "lightning_logs"
        / ("mlm" if task == "mlm" else "tiny")
        / "stopped"
        / "checkpoints"
        / "last.ckpt"
    )
    step = torch.load(last, weights_only=True)["global_step"]
    resumed = fit("resumed", *then, f"--ckpt_path={last}")
    assert Path(resumed.trainer.log_dir).name == "stopped", "the continuation logs into the run it continues"
    assert resumed.trainer.global_step == reference.trainer.global_step
    trained = [row for row in batches(workdir / "stopped.jsonl") if row["step"] < step]
    trained += batches(workdir / "resumed.jsonl")
    expected = batches(workdir / "reference.jsonl")
    if not killed:
        # A longer plan: the stopped run's steps ran on its own (shorter) schedule.
        trained, expected = (
            [{**row, "lr": None} if row["step"] < step else row for row in rows]
            for rows in (trained, expected)
        )
    assert trained == expected
    if killed:  # the same plan: the same weights too
        mine = torch.load(last, weights_only=True)["state_dict"]
        theirs = torch.load(Path(reference.trainer.log_dir) / "checkpoints" / "last.ckpt", weights_only=True)
        for name, tensor in theirs["state_dict"].items():
            assert torch.allclose(mine[name], tensor, atol=1e-5), name
