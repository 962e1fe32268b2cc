"""Multi-process runs of the real CLI on the CPU: DDP with the gloo backend, 2 processes on one machine."""

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, mlm_args, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_imdb.cli import cli_main
from bert_imdb.distributed import TimedGroup

DDP = ["--trainer.devices=2", "--trainer.strategy=ddp"]
# DDP whose other process is forked from the first once the Trainer is built, instead of started again
# through this CLI: the same DDPStrategy, samplers and collectives, at half the start-up (6 s of imports
# on 2 cores). For runs whose subject is what the ranks compute, not how they were launched: the evaluations,
# the predictions, the fit whose samples and evaluations are checked, one of the two pre-training fits
# (whose validation masks, drawn in a forked rank, ended in transformers' ValueError), the killed run's
# uninterrupted reference. The killed and resumed fits and the other pre-training fit keep a user's `ddp`.
FORKED = ["--trainer.devices=2", "--trainer.strategy=ddp_fork"]


def start(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, which starts the others (see `started`)."""
    return started([sys.executable, "-m", "bert_imdb", *args], workdir, timeout)


def started(command: list[str], workdir: Path, timeout: float) -> subprocess.CompletedProcess:
    """`command` in a process of its own; one thread each, so two runs can share this machine's two cores.
    A run that has not ended within `timeout` seconds (a hang) is killed with every process it started, and
    the test fails saying so."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: killed whole on a hang, and kills nothing else
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=60)
        pytest.fail(
            f"{' '.join(command[:4])} did not end within {timeout:.0f} s (a hang); its stderr: {err[-3000:]}"
        )
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def run(workdir: Path, *args: str) -> None:
    done = start(workdir, *args)
    assert done.returncode == 0, done.stderr[-3000:]


def last_scalar(run_folder: Path, tag: str) -> float:
    events = EventAccumulator(str(run_folder))
    events.Reload()
    return events.Scalars(tag)[-1].value


@pytest.mark.slow
def test_ddp_ranks_train_on_disjoint_samples_and_test_as_one_process(tiny_model, hub_dataset, workdir):
    seen = workdir / "seen"
    args = tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1")
    record = ["--trainer.callbacks+=probes.RecordTrainingSamples", f"--trainer.callbacks.folder={seen}"]
    run(workdir, "fit", *args, *FORKED, *record)

    ranks = [json.loads((seen / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 160  # 320 training reviews, half each
    assert not set(ranks[0]) & set(ranks[1]), "a training review went to both ranks"
    assert len(set(ranks[0]) | set(ranks[1])) == 320

    runs = workdir / "lightning_logs" / "tiny"
    last = runs / "version_0" / "checkpoints" / "last.ckpt"
    # 160 reviews per rank in batches of 8: 20 optimizer steps, which the scheduler was sized for.
    assert torch.load(last, weights_only=True)["global_step"] == 20

    # Evaluations whose reviews do not divide between the processes, one with fewer reviews than
    # processes: the same metrics as one process, no review counted twice, no process left waiting.
    evaluations = {
        "test 17 in batches of 4": ["test", "--data.max_test_samples=17", "--data.eval_batch_size=4"],
        "test 1": ["test", "--data.max_test_samples=1"],
        "validate 33 in batches of 8": ["validate", "--data.max_val_samples=33", "--data.eval_batch_size=8"],
    }

    def evaluate(name: str) -> subprocess.CompletedProcess:
        subcommand, *limits = evaluations[name]
        record = ["--trainer.callbacks+=probes.RecordMetrics", f"--trainer.callbacks.path={name}.json"]
        return start(workdir, subcommand, *args, *FORKED, *limits, *record, f"--ckpt_path={last}")

    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(evaluations, pool.map(evaluate, evaluations), strict=True))
    for name, (subcommand, *limits) in evaluations.items():
        assert done[name].returncode == 0, (name, done[name].stderr[-3000:])
        two = json.loads((workdir / f"{name}.json").read_text())
        one = cli_main([subcommand, *args, *limits, f"--ckpt_path={last}"]).trainer.callback_metrics
        # A test of fewer reviews than the fit's data settings give logs under its own name
        # (bert_imdb/reporting/variants.py).
        records = f"test_n{limits[0].split('=')[1]}" if subcommand == "test" else "val"
        for metric in ("acc", "f1", "loss"):
            key = f"{records}/{metric}"
            assert two[key] == pytest.approx(float(one[key]), abs=1e-6), (name, key)


def masks(folder: Path) -> list[torch.Tensor]:
    """The recorded MLM mask of each rank's first batches, False where either run had a special token."""
    recorded = [json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return [(torch.tensor(b["masked"]), torch.tensor(b["special"])) for rank in recorded for b in rank]


@pytest.mark.slow
def test_ddp_pre_training_draws_its_own_masks_per_rank_and_worker_and_syncs_perplexity(
    tiny_model, text_dataset, workdir
):
    args = mlm_args(tiny_model, text_dataset)

    def fit(name: str, workers: int) -> subprocess.CompletedProcess:
        record = ["--trainer.callbacks+=probes.RecordMasks", f"--trainer.callbacks.folder={name}"]
        logger = [f"--trainer.logger.init_args.name={name}"]
        launch = DDP if name == "a" else FORKED
        return start(workdir, "fit", *args, *launch, *record, *logger, f"--data.num_workers={workers}")

    runs = {"a": 0, "workers": 2}
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(runs, pool.map(lambda name: fit(name, runs[name]), runs), strict=True))
    for name in runs:
        assert done[name].returncode == 0, (name, done[name].stderr[-3000:])

    # Reproducible from the seed: the same masks in a second run, however its other rank was started and
    # whatever its DataLoader workers (masks are drawn in each rank's main process).
    assert all(
        torch.equal(m1, m2)
        for (m1, _), (m2, _) in zip(masks(workdir / "a"), masks(workdir / "workers"), strict=True)
    )
    # Every rank's (and with workers, every worker's) batches get masks of their own: with the same random
    # draws, two batches of equal shape would be masked at the same ordinary positions.
    for name in ("a", "workers"):
        batches = masks(workdir / name)
        for i, (mask_i, special_i) in enumerate(batches):
            for mask_j, special_j in batches[i + 1 :]:
                ordinary = ~special_i & ~special_j
                assert not torch.equal(mask_i[ordinary], mask_j[ordinary]), (
                    f"{name}: two batches share a mask"
                )

    folder = workdir / "lightning_logs" / "workers" / "version_0"
    # The validation set, masked once, is split between the ranks; the perplexity is over all of it.
    two_processes = last_scalar(folder, "val/perplexity")  # before the validate below logs into this run
    one_process = cli_main(["validate", *args, f"--ckpt_path={folder / 'checkpoints' / 'last.ckpt'}"])
    assert two_processes == pytest.approx(
        float(one_process.trainer.callback_metrics["val/perplexity"]), rel=1e-4
    )


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_to_the_weights_of_an_uninterrupted_one(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    # 320 training reviews over 2 ranks in batches of 8: 20 steps an epoch, 40 in all; last.ckpt every 5.
    args = tiny_args(
        tiny_model, hub_dataset, "--trainer.deterministic=true", "--last_checkpoint.every_n_train_steps=5"
    )
    kill = [
        "--trainer.callbacks+=probes.KillAtStep",
        "--trainer.callbacks.step=27",
        "--trainer.callbacks.process_group=true",
    ]
    (workdir / "whole").mkdir()
    (workdir / "killed").mkdir()
    with ThreadPoolExecutor(2) as pool:
        whole, killed = pool.map(
            lambda a: start(*a),
            # The uninterrupted run's other rank forked (the same run, one start-up less); the killed and
            # resumed runs are started as a user's are.
            [(workdir / "whole", "fit", *args, *FORKED), (workdir / "killed", "fit", *args, *DDP, *kill)],
        )
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert killed.returncode == -9, killed.stderr[-3000:]
    run = Path("lightning_logs") / "tiny" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(workdir / "killed" / run, weights_only=True)["global_step"] == 25

    # Another number of processes, or another batch size, would not train the batches the run would have:
    # refused before anything starts. In this process: that an error reaches stderr as one line is
    # tests/test_hostile_inputs.py's.
    monkeypatch.chdir(workdir / "killed")
    for other, said in (
        ([], "processes=2, this run has processes=1"),
        ([*DDP, "--data.batch_size=16"], "data.batch_size=8, this run has data.batch_size=16"),
    ):
        with pytest.raises(SystemExit) as refused:
            cli_main(["fit", *args, *other, "--ckpt_path=last"])
        assert said in str(refused.value.code) and "\n" not in str(refused.value.code)

    resumed = start(workdir / "killed", "fit", *args, *DDP, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = (torch.load(workdir / folder / run, weights_only=True) for folder in ("whole", "killed"))
    assert got["global_step"] == expected["global_step"] == 40
    largest = max(
        float((expected["state_dict"][k] - got["state_dict"][k]).abs().max()) for k in expected["state_dict"]
    )
    # Resumed with rank 0's random states on both ranks, rank 1's dropout masks differ: 2.6e-3 (seen).
    assert largest < 1e-5, f"the resumed run ended elsewhere (largest difference {largest:.2e})"


# (processes, DataLoader workers, reviews, batch size): a file of 20 in batches of 16 over 2 x 2 lost 4
# reviews; files smaller than one batch, or with fewer reviews than processes, leave a rank without any.
PREDICT_GRID = [(2, 2, 20, 16), (2, 0, 5, 16), (2, 2, 1, 4), (2, 1, 37, 4)]
PREDICTS_IN_A_ROW = """
import json, multiprocessing.forkserver, sys
from bert_imdb.cli import cli_main
from bert_imdb.data.workers import worker_start_method
# A fork server running in the process the ranks are forked from (as after a loader with workers there):
# CPython's check of it failed in each rank (workarounds/fork_server_in_forked_child.py).
worker_start_method(2)
multiprocessing.forkserver.ensure_running()
for args in json.loads(sys.argv[1]):
    cli_main(["predict", *args])
"""


@pytest.mark.slow
def test_ddp_predicts_in_a_row_write_every_review_once_in_input_order(
    tiny_model, hub_dataset, workdir, best_checkpoint, request
):
    """Each layout (processes, loader workers, reviews, batch) writes the rows one process writes, in input
    order. They run one after another in one process that keeps the threads of those before
    (`pytest --predict-loops N` runs the layouts N times): DDP predict with workers once hung in CI (a worker
    forked from a process with threads waited for ever on a lock copied as held)."""
    words = ["wonderful", "awful", "the plot", "boring", "superb acting", "a film"]
    lines = [f"{words[i % 6]} {words[(i * 7) % 6]} {i}" for i in range(37)]
    args = [*tiny_args(tiny_model, hub_dataset), f"--ckpt_path={best_checkpoint}"]
    rounds = request.config.getoption("predict_loops")
    runs = []
    for round_ in range(rounds):
        for processes, workers, reviews, batch in PREDICT_GRID:
            (workdir / f"{reviews}.txt").write_text("\n".join(lines[:reviews]) + "\n")
            runs.append(
                [
                    *args,
                    f"--data.predict_file={reviews}.txt",
                    f"--data.num_workers={workers}",
                    f"--data.eval_batch_size={batch}",
                    f"--trainer.devices={processes}",
                    "--trainer.strategy=ddp_fork",
                    f"--predictions.output_file={round_}-{processes}x{workers}-{reviews}-{batch}.csv",
                ]
            )
    command = [sys.executable, "-c", PREDICTS_IN_A_ROW, json.dumps(runs)]
    done = started(command, workdir, timeout=60 + 30 * len(runs))
    assert done.returncode == 0, done.stderr[-3000:]
    for processes, workers, reviews, batch in PREDICT_GRID:
        case = (processes, workers, reviews, batch)
        cli_main(
            [
                "predict",
                *args,
                f"--data.predict_file={workdir / f'{reviews}.txt'}",
                f"--predictions.output_file={workdir / f'one-{reviews}.csv'}",
            ]
        )
        one = (workdir / f"one-{reviews}.csv").read_text().splitlines()
        many = (workdir / f"0-{processes}x{workers}-{reviews}-{batch}.csv").read_text().splitlines()
        assert len(one) == reviews + 1, case
        assert [row.split(",")[:2] for row in many] == [row.split(",")[:2] for row in one], case
        for a, b in zip(one[1:], many[1:], strict=True):
            assert [float(x) for x in a.split(",")[2:]] == pytest.approx(
                [float(x) for x in b.split(",")[2:]], abs=1e-5
            )
        for round_ in range(1, rounds):
            again = workdir / f"{round_}-{processes}x{workers}-{reviews}-{batch}.csv"
            assert again.read_text().splitlines() == many, (round_, case)
    assert not list(workdir.glob("*.partial"))


def test_ddp_predict_of_an_empty_file_ends_in_one_line(tiny_model, hub_dataset, workdir, best_checkpoint):
    (workdir / "empty.txt").write_text("\n\n")
    args = [
        *tiny_args(tiny_model, hub_dataset),
        f"--ckpt_path={best_checkpoint}",
        "--data.predict_file=empty.txt",
    ]
    done = start(workdir, "predict", *args, *DDP)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: predict file empty.txt is empty: put one review per line, or a text column in .csv/.jsonl"
    )
    assert "Traceback" not in done.stderr and "Initializing distributed" not in done.stderr


COLLECTIVE_PROBE = """
import os, subprocess, sys, time
from types import SimpleNamespace
import torch
from lightning.fabric.strategies.launchers.subprocess_script import _launch_process_observer
from bert_imdb.distributed import TimedGroup
from bert_imdb.errors import UserError
rank, store = int(sys.argv[1]), sys.argv[2]
# Like Lightning's `ddp` launcher: the first process starts the other and watches it.
procs = [] if rank else [subprocess.Popen([sys.executable, __file__, "1", store])]
started = list(procs)
if procs:
    _launch_process_observer(procs)
torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
launcher = SimpleNamespace(procs=procs, kill=lambda signum: [p.send_signal(signum) for p in procs])
group = TimedGroup(SimpleNamespace(strategy=SimpleNamespace(launcher=launcher)), seconds=1)
if rank == 1:
    time.sleep(60)  # stuck: never at the collective in time
    os._exit(0)
try:
    group.gather(rank, "the end of the evaluation")  # its barrier first: predict's is that barrier alone
except UserError as err:
    time.sleep(6)  # longer than Lightning's observer takes to kill this process when a child ends badly
    print(err, started[0].returncode)
    os._exit(0)
os._exit(3)
"""


@pytest.mark.slow
def test_a_process_that_never_reaches_a_collective_is_named_in_one_line_and_stopped(tmp_path):
    """Rank 0 waited at the predictions' barrier for ever when rank 1 never got there (a hang seen in CI);
    the gathers at an evaluation's end and a checkpoint's save waited 30 min. Rank 1 is then stopped, and
    rank 0 lives on to say so (Lightning's launcher would otherwise kill it for its child's bad end)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    probe = tmp_path / "probe.py"
    probe.write_text(COLLECTIVE_PROBE)
    first = subprocess.Popen(
        [sys.executable, str(probe), "0", str(tmp_path / "store")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    said, _ = first.communicate(timeout=120)
    assert first.returncode == 0, said
    assert said.strip() == (
        "rank 1 did not reach the end of the evaluation within 1 s (stuck or dead): this run stops; see that "
        "rank's log (--trainer.strategy.timeout sets the limit) -9"
    )


@pytest.mark.parametrize(
    ("torch_said", "who"),
    [
        ("Ranks 1, 3 failed to pass monitoredBarrier in 1000 ms", "rank 1, 3"),  # on rank 0
        (  # on another rank, when rank 0 is the one missing
            "Rank 2 successfully reached monitoredBarrier, but received errors while waiting for send/recv "
            "from rank 0. Please check rank 0 logs for faulty rank.",
            "rank 0",
        ),
        ("Connection closed by peer [127.0.0.1]:40123", "another process"),  # the stop signal's all-reduce
    ],
)
def test_the_missing_rank_and_the_setting_of_the_limit_are_named(torch_said, who):
    """torch's own words (read from libtorch 2.13's monitoredBarrier), and predict's own limit."""
    group = TimedGroup(SimpleNamespace(strategy=SimpleNamespace()), 1800, "--predictions.barrier_timeout")
    assert str(group.missing("the end of predict", RuntimeError(torch_said))) == (
        f"{who} did not reach the end of predict within 1800 s (stuck or dead): this run stops; see that "
        "rank's log (--predictions.barrier_timeout sets the limit)"
    )


@pytest.mark.slow
def test_a_rank_gone_at_the_end_of_a_test_ends_the_run_in_one_line(
    tiny_model, hub_dataset, workdir, best_checkpoint
):
    """Through the CLI with the `ddp` launcher: rank 1 is gone (exited without an error, so nothing took the
    job down) before the gather of the test's reviews; rank 0 names it in one line and exits 1, instead of
    failing in gloo's traceback. (A rank still alive but stuck: the collective probe above.)"""
    done = start(
        workdir,
        "test",
        *tiny_args(tiny_model, hub_dataset),
        f"--ckpt_path={best_checkpoint}",
        "--trainer.devices=2",
        "--trainer.strategy=DDPStrategy",
        "--trainer.strategy.timeout=0:01:40",
        "--trainer.callbacks+=probes.QuitRank",
        timeout=200,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: rank 1 did not reach the end of the evaluation within 100 s (stuck or dead): this run stops; "
        "see that rank's log (--trainer.strategy.timeout sets the limit)"
    )
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_refusal_inside_a_forked_process_is_one_line(tiny_model, hub_dataset, workdir, best_checkpoint):
    """`ddp_fork` hands a rank's error back as the text of its traceback (torch's ProcessRaisedException),
    which ended the command in that traceback: a refusal made inside the processes is said in its one line."""
    (workdir / "reviews.txt").write_text("a superb film\n")
    (workdir / "taken.csv").write_text("kept\n")
    done = start(
        workdir,
        "predict",
        *tiny_args(tiny_model, hub_dataset),
        f"--ckpt_path={best_checkpoint}",
        "--data.predict_file=reviews.txt",
        "--predictions.output_file=taken.csv",
        *FORKED,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: taken.csv exists: pass another --predictions.output_file, or --predictions.overwrite true"
    )
    assert "Traceback" not in done.stderr
    assert (workdir / "taken.csv").read_text() == "kept\n"
