import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import REPO, tiny_args

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
