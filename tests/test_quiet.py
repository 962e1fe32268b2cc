import subprocess
import sys

import pytest
from conftest import tiny_args

from bert_imdb.quiet import RECORDS, WARNINGS


@pytest.mark.slow
def test_fit_and_predict_print_no_library_noise(tiny_model, hub_dataset, workdir):
    """The messages bert_imdb/quiet.py keeps off the terminal, as a user runs the commands."""
    (workdir / "reviews.txt").write_text("a wonderful film\n" + "a dull plot " * 200 + "\n", encoding="utf-8")
    noise = [*WARNINGS, *(start for _, start in RECORDS)]
    for command in (
        ["fit", *tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1")],
        [
            "predict",
            *tiny_args(tiny_model, hub_dataset),
            "--data.predict_file=reviews.txt",
            "--ckpt_path=last",
        ],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "bert_imdb", *command],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        shown = done.stdout + done.stderr
        assert not [start for start in noise if start in shown], shown[-3000:]
        assert "Traceback" not in shown
