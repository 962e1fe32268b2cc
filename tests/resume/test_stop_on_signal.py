import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_args

from bert_imdb.cli import cli_main


def fit(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    return subprocess.run(
        [sys.executable, "-m", "bert_imdb", "fit", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# 320 training reviews in batches of 8: 40 batches an epoch. The signal comes after batch 4, inside an
# accumulation window of 2 or 3 batches: the stop waits for the window's end (a save inside it would lose
# the window's first batches, whose gradients no checkpoint holds).
@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "accumulate"), [(signal.SIGTERM, 3), (signal.SIGINT, 1), (signal.SIGUSR1, 2)], ids=str
)
def test_a_signal_stops_the_fit_with_a_checkpoint_and_an_honest_exit_code(
    tiny_model, hub_dataset, workdir, signum, accumulate
):
    args = tiny_args(
        tiny_model,
        hub_dataset,
        "--trainer.max_epochs=1",
        "--trainer.deterministic=true",
        f"--trainer.accumulate_grad_batches={accumulate}",
    )
    probe = [
        "--trainer.callbacks+=probes.SignalAtStep",
        "--trainer.callbacks.batch=4",
        f"--trainer.callbacks.signum={signum}",
    ]
    step = -(-5 // accumulate)  # the step whose window holds batch 4
    stopped = fit(workdir, *args, *probe)
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    line = stopped.stderr.strip().splitlines()[-1]
    checkpoints = workdir / "lightning_logs" / "tiny" / "version_0" / "checkpoints"
    assert line == (
        f"error: fit stopped by {signal.Signals(signum).name} at step {step}: saved {checkpoints.relative_to(workdir)}"
        "/last.ckpt; continue with the same command and --ckpt_path last"
    ), line
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert saved["global_step"] == step
    # Saved in the end hooks of the window's last batch, which Lightning counts complete after them.
    progress = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert progress["completed"] == step * accumulate - 1
    # Continued, it trains what an uninterrupted run does.
    resumed = cli_main(["fit", *args, "--ckpt_path=last"])
    whole = cli_main(["fit", *args, "--trainer.logger.init_args.version=whole"])
    assert resumed.trainer.global_step == whole.trainer.global_step
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=1e-5, msg=name)


def test_a_second_signal_stops_at_once_and_leaves_no_partial_file(tiny_model, hub_dataset, workdir):
    args = tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1")
    probe = [
        "--trainer.callbacks+=probes.SignalAtStep",
        "--trainer.callbacks.batch=2",
        "--trainer.callbacks.times=2",
    ]
    stopped = fit(workdir, *args, *probe)
    assert stopped.returncode == -signal.SIGTERM, stopped.stderr[-3000:]
    assert not list(workdir.rglob("*.partial"))
