import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, benchmark_script, tiny_args

full_run = benchmark_script("full_run")


@pytest.mark.slow
def test_full_run_script_runs_every_stage_and_reports_them(tiny_model, hub_dataset, workdir):
    config = workdir / "tiny.yaml"
    config.write_text(
        "trainer:\n  logger:\n    class_path: lightning.pytorch.loggers.TensorBoardLogger\n"
        "    init_args: {save_dir: lightning_logs, name: tiny}\n"
    )
    # max_length 32: the fixture's test split has reviews on both sides of it.
    extra = " ".join(tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1", "--data.max_length=32"))
    run = [str(REPO / "benchmarks" / "full_run.sh"), "out", str(config)]
    env = {**os.environ, "FULL_RUN_ARGS": extra}
    done = subprocess.run(run, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stages = (workdir / "out" / "stages.tsv").read_text()
    assert [line.split("\t")[0] for line in stages.splitlines()] == [
        "fit",  # and the test, in its process
        "export",
        "test-head",
        "test-tail",
    ]
    assert all(line.endswith("\t0") for line in stages.splitlines())
    assert (workdir / "out" / "model" / "README.md").is_file()
    # Run again: every stage ended well, so none runs again.
    assert subprocess.run(run, cwd=workdir, env=env, capture_output=True, timeout=300).returncode == 0
    assert (workdir / "out" / "stages.tsv").read_text() == stages

    folder = next((workdir / "lightning_logs" / "tiny").glob("version_*"))
    report = full_run.report(Path("out"), folder)  # what `full_run.py report` prints, without its start-up
    assert "Test of all 64 test reviews: accuracy 0." in report and "(95% CI 0." in report
    for stage in ("model loaded and reviews tokenized (fit)", "training", "validation"):
        assert f"| {stage} |" in report
    # Each other truncation tested the reviews the run's truncation cut, and no others.
    cut = int(re.search(r"the run's own truncation: (\d+) reviews cut", report)[1])
    assert 0 < cut < 64 and "not comparable" not in report
    for truncation in ("head", "tail"):
        assert f"- `test_{truncation}_min33`: {cut} reviews, accuracy on them " in report
