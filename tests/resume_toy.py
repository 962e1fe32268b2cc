"""The toy run that generated resume scenarios are made of, and the check of one scenario.

A scenario's runs (the uninterrupted reference, the first run, its continuation) train a toy module with
the project's resume machinery (ExactResumeFitLoop, LastCheckpoint, ExactResume, SlurmRequeue, EarlyStop):
in this process for one process, or in two processes (DDP on gloo) started as torchrun or SLURM's srun
would start them: `python tests/resume_toy.py SPEC` is one of them, and writes what it trained to files.
"""

import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.environments import SLURMEnvironment
from torch import nn
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

from bert_imdb.callbacks.early_stopping import EarlyStop
from bert_imdb.cli import BEST_CHECKPOINT
from bert_imdb.data.samplers import LengthGroupedSampler
from bert_imdb.resume.exact_resume import ExactResume
from bert_imdb.resume.last_checkpoint import LastCheckpoint
from bert_imdb.resume.slurm_requeue import SlurmRequeue
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
    processes: int = 1
    # With two processes, rank 1 gets SLURM's signal this many batches after rank 0 (None: never).
    slurm_lag: int | None = 0
    # Early stopping (None: off): validations every val_every training batches (0: at epochs' ends),
    # whose score is drawn from the step, so a plan stops wherever the draws stop improving.
    patience: int | None = None
    val_every: int = 0
    # The training sampler: None, torchdata's StatefulDistributedSampler (shuffled or not: the project's
    # random batches); "length-grouped" or "token budget": the project's LengthGroupedSampler (shuffle
    # unused), over example lengths of 4-11 tokens, with max_tokens a batch for the latter.
    loader: str | None = None
    max_tokens: int | None = None


def score(step: int) -> float:
    return random.Random(step).random()


class Examples(list):
    """Example indices, which the DataLoader also fetches a whole batch of at once (length-grouped)."""

    def __getitem__(self, index):
        return torch.tensor(index) if isinstance(index, list) else super().__getitem__(index)


def sampler(scenario: Scenario, processes: int, rank: int):
    if scenario.loader is None:
        return StatefulDistributedSampler(
            range(scenario.examples), num_replicas=processes, rank=rank, shuffle=scenario.shuffle, seed=7
        )
    lengths = np.array([4 + (i * 7919) % 8 for i in range(scenario.examples)])
    return LengthGroupedSampler(
        lengths, scenario.batch_size, processes, rank, seed=7, max_tokens=scenario.max_tokens
    )


class Recorder(L.LightningModule):
    """Records (step, epoch, examples) of every batch it trains on, and in each checkpoint how many batches
    it had trained. Its loss draws from torch's generator, as dropout does (each process from its own seed),
    so the weights depend on the random state being resumed too."""

    def __init__(self, scenario: Scenario, signal_at: int | None = None):
        super().__init__()
        self.scenario = scenario
        self.layer = nn.Linear(1, 1)
        self.seen: list[tuple[int, int, tuple[int, ...]]] = []
        self.signal_at, self.batches = signal_at, 0

    def training_step(self, batch, batch_idx):
        self.seen.append((self.global_step, self.current_epoch, tuple(batch.tolist())))
        if self.batches == self.signal_at:
            os.kill(os.getpid(), signal.SIGUSR1)  # as SLURM sends it, to the task's process
        self.batches += 1
        noise = torch.rand(len(batch))
        return (self.layer(batch.float().view(-1, 1)).squeeze(1) * noise).pow(2).mean()

    def on_save_checkpoint(self, checkpoint):
        checkpoint["batches_trained"] = self.batches

    def validation_step(self, batch, batch_idx):
        return None

    def on_validation_epoch_end(self):
        self.log("val/score", score(self.global_step), sync_dist=True)

    def configure_optimizers(self):
        # Sized as the project's optimizer is, from Lightning's estimate (which builds the loader).
        assert self.trainer.estimated_stepping_batches > 0
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        chosen = sampler(self.scenario, self.trainer.world_size, self.trainer.global_rank)
        # LengthGroupedSampler hands out whole batches.
        batch_size = None if self.scenario.loader else self.scenario.batch_size
        return StatefulDataLoader(Examples(range(self.scenario.examples)), batch_size, sampler=chosen)

    def val_dataloader(self):
        return DataLoader([0, 1], batch_size=1)


@dataclass
class Run:
    """What one run trained: (step, epoch, examples) of each batch, per process; its step and weights, and
    its best checkpoint (score and file name), where it validates."""

    global_step: int
    seen: list[list[tuple[int, int, tuple[int, ...]]]]
    params: list[torch.Tensor]
    best: tuple[float, str] | None = None


def train(scenario: Scenario, plan: Plan, folder: Path, ckpt_path, every_n: int, signal_at) -> Recorder:
    """One process's part of a run (all of it with one process). Scenarios with early stopping validate
    and keep a best checkpoint: the reference's in best-reference/, the first run's in best-run/, which its
    continuation shares, as a resumed CLI run shares its run folder."""
    rank = int(os.environ.get("SLURM_PROCID", os.environ.get("LOCAL_RANK", 0)))
    torch.manual_seed(rank)
    slurm = [SlurmRequeue()] if signal_at is not None else []
    early = (
        [EarlyStop(patience=scenario.patience, monitor="val/score", mode="max")] if scenario.patience else []
    )
    last = LastCheckpoint(
        dirpath=folder,
        filename="{step}",
        monitor=None,
        save_top_k=-1,
        every_n_train_steps=every_n,
        enable_version_counter=False,
    )
    validate = scenario.patience is not None
    best_dir = folder.parent / f"best-{'reference' if folder.name == 'reference' else 'run'}"
    # No version counter: the files the first run wrote after the checkpoint it is "killed" after are there.
    best = ModelCheckpoint(
        best_dir,
        "{step}",
        monitor="val/score",
        mode="max",
        enable_version_counter=False,
        save_on_train_epoch_end=BEST_CHECKPOINT["checkpoint.save_on_train_epoch_end"],  # as the CLI's
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=scenario.processes,
        strategy="ddp" if scenario.processes > 1 else "auto",
        max_epochs=plan.max_epochs,
        max_steps=plan.max_steps,
        accumulate_grad_batches=scenario.accumulate,
        callbacks=[*([best] if validate else []), last, ExactResume(), *slurm, *early],
        # Under SLURM, Lightning installs its requeue handler, which SlurmRequeue replaces.
        plugins=[SLURMEnvironment(auto_requeue=True)] if slurm else None,
        default_root_dir=folder,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1.0 if validate else 0,
        val_check_interval=scenario.val_every or None,
        num_sanity_val_steps=0,
    )
    ExactResumeFitLoop.install(trainer)
    if rank == 1 and signal_at is not None:
        signal_at = None if scenario.slurm_lag is None else signal_at + scenario.slurm_lag
    module = Recorder(scenario, signal_at)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        trainer.fit(module, ckpt_path=ckpt_path)
    finally:  # SlurmRequeue ignores SIGTERM once it has saved: not in this test process afterwards
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return module


def fit(
    scenario: Scenario,
    plan: Plan,
    folder: Path,
    ckpt_path: Path | None = None,
    every_n: int = 0,
    signal_at: int | None = None,
) -> Run:
    if scenario.processes > 1:
        return _fit_in_processes(scenario, plan, folder, ckpt_path, every_n, signal_at)
    with slurm_job(folder) if signal_at is not None else contextlib.nullcontext():
        module = train(scenario, plan, folder, ckpt_path, every_n, signal_at)
    params = [p.detach().clone() for p in module.parameters()]
    return Run(module.global_step, [module.seen], params, best_of(module.trainer))


def best_of(trainer) -> tuple[float, str] | None:
    callback = trainer.checkpoint_callback
    if callback.best_model_score is None:
        return None
    return float(callback.best_model_score), Path(callback.best_model_path).name


def slurm_environment(folder: Path, processes: int) -> dict[str, str]:
    """A SLURM batch job's environment, with an `scontrol` that records the requeue instead of doing it."""
    # Here, not at the top: the processes this file runs as get their environment from the test, and
    # importing conftest makes temporary folders.
    from conftest import SLURM_JOB

    stub = folder / "bin" / "scontrol"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text(f'#!/bin/sh\necho "$@" >> {folder / "scontrol.calls"}\n')
    stub.chmod(0o755)
    return {
        **SLURM_JOB,
        "SLURM_NTASKS": str(processes),
        "SLURM_NTASKS_PER_NODE": str(processes),
        "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}",
    }


@contextlib.contextmanager
def slurm_job(folder: Path):
    with mock.patch.dict(os.environ, slurm_environment(folder, 1)):
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit_in_processes(scenario, plan, folder: Path, ckpt_path, every_n, signal_at) -> Run:
    """The run in `scenario.processes` processes of this file, started as a launcher would start them."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "scenario": asdict(scenario),
                "plan": asdict(plan),
                "folder": str(folder),
                "ckpt_path": None if ckpt_path is None else str(ckpt_path),
                "every_n": every_n,
                "signal_at": signal_at,
            }
        )
    )
    common = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }
    if signal_at is not None:
        common.update(slurm_environment(folder, scenario.processes))
    processes = []
    for rank in range(scenario.processes):
        if signal_at is not None:  # srun's
            env = {**common, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
        else:  # torchrun's
            env = {**common, "LOCAL_RANK": str(rank), "NODE_RANK": "0", "WORLD_SIZE": str(scenario.processes)}
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, str(spec)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    outputs = [process.communicate(timeout=600)[0].decode() for process in processes]
    for rank, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"rank {rank} of {folder.name} failed:\n{output[-3000:]}"
    results = [json.loads((folder / f"result-{rank}.json").read_text()) for rank in range(scenario.processes)]
    seen = [[(step, epoch, tuple(items)) for step, epoch, items in result["seen"]] for result in results]
    params = torch.load(folder / "params.pt", weights_only=True)
    best = None if results[0]["best"] is None else tuple(results[0]["best"])
    return Run(results[0]["global_step"], seen, params, best)


def check(scenario: Scenario, tmp_path: Path) -> None:
    """The first run, killed after one of its checkpoints (or stopped by SLURM's signal) and continued,
    trains what the uninterrupted run trains, and ends at its step with its weights (same plan)."""
    reference = fit(scenario, scenario.then, tmp_path / "reference")
    signal_at = scenario.slurm_signal_at
    first = fit(
        scenario, scenario.first, tmp_path / "first", every_n=scenario.every_n_steps, signal_at=signal_at
    )
    if signal_at is None:
        checkpoints = sorted((tmp_path / "first").glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
        if not checkpoints:  # early stopping before its first optimizer step: nothing to resume
            assert first.global_step == 0, "the first run wrote no checkpoint"
            return
        killed_at = checkpoints[scenario.kill_after % len(checkpoints)]
    else:  # the requeued job resumes from the checkpoint SlurmRequeue saved, if the run lasted that long
        killed_at = tmp_path / "first" / "hpc_ckpt_1.ckpt"
        if not killed_at.exists():
            # Saved at the first optimizer step from the batch the processes act on the signal, one batch
            # later with several (SlurmRequeue says why): none if the run ended before one.
            acted_at, trained = signal_at + (scenario.processes > 1), first.seen[0]
            stepped = acted_at < len(trained) and first.global_step > trained[acted_at][0]
            assert not stepped, "signalled, and an optimizer step followed, but nothing was saved"
            return
        assert (tmp_path / "first" / "scontrol.calls").read_text().split() == ["requeue", "4242"]
    trained_before = torch.load(killed_at, weights_only=True)["batches_trained"]
    resumed = fit(scenario, scenario.then, tmp_path / "resumed", ckpt_path=killed_at)

    for rank in range(scenario.processes):
        trained = [(epoch, items) for _, epoch, items in first.seen[rank][:trained_before]]
        trained += [(epoch, items) for _, epoch, items in resumed.seen[rank]]
        expected = [(epoch, items) for _, epoch, items in reference.seen[rank]]
        assert trained == expected, f"killed after {killed_at.name}: rank {rank} trained other batches"
    assert resumed.global_step == reference.global_step
    assert resumed.best == reference.best, "another best checkpoint than the uninterrupted run's"
    for mine, theirs in zip(resumed.params, reference.params, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-6)


def generated(seed: int, count: int, processes: int = 1) -> list[Scenario]:
    rng = random.Random(seed)
    scenarios = []
    for _ in range(count):
        examples, batch_size, accumulate = rng.randint(3, 12), rng.randint(1, 3), rng.randint(1, 3)
        loader = rng.choice([None, None, "length-grouped", "token budget"])
        max_tokens = rng.randint(11, 16) if loader == "token budget" else None
        if loader == "token budget":  # at most 4 examples a batch: two batches at least, one per process
            examples = max(examples, 8)
        elif loader == "length-grouped":  # which refuses fewer examples than a batch on each process
            examples = max(examples, batch_size * processes)
        # Each process's batches an epoch, as its sampler deals them (LengthGroupedSampler: whole batches).
        drawn = Scenario(
            examples, batch_size, 1, False, Plan(1), Plan(1), 0, 0, loader=loader, max_tokens=max_tokens
        )
        dealt = len(sampler(drawn, processes, 0))
        per_epoch = dealt if loader else math.ceil(dealt / batch_size)
        steps_per_epoch = math.ceil(per_epoch / accumulate)
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
        signal_at = rng.randrange(per_epoch * first.max_epochs) if rng.random() < 0.25 else None
        shuffle, kill_after = rng.random() < 0.5, rng.randint(-3, 5)
        lag = rng.choice([0, 0, 1, 2, None])
        patience = rng.choice([None, None, 1, 2, 3])
        val_every = rng.choice([0, rng.randint(1, per_epoch)])
        scenarios.append(
            Scenario(
                examples,
                batch_size,
                accumulate,
                shuffle,
                first,
                then,
                every_n,
                kill_after,
                signal_at,
                processes,
                lag,
                patience,
                val_every,
                loader,
                max_tokens,
            )
        )
    return scenarios


if __name__ == "__main__":  # one process of a multi-process run
    spec = json.loads(Path(sys.argv[1]).read_text())
    scenario = Scenario(
        **{
            **spec["scenario"],
            "first": Plan(**spec["scenario"]["first"]),
            "then": Plan(**spec["scenario"]["then"]),
        }
    )
    folder = Path(spec["folder"])
    module = train(
        scenario, Plan(**spec["plan"]), folder, spec["ckpt_path"], spec["every_n"], spec["signal_at"]
    )
    rank = module.global_rank
    result = {
        "global_step": module.global_step,
        "seen": module.seen,
        "best": best_of(module.trainer),
    }
    (folder / f"result-{rank}.json").write_text(json.dumps(result))
    if rank == 0:
        torch.save([p.detach() for p in module.parameters()], folder / "params.pt")
