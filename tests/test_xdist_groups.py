"""The suite's contract with pytest-xdist: the tests of one xdist_group run on one worker, one after the
other (the real SLURM jobs, which share SLURM's two nodes). pytest-xdist 3.8 names a test's group by
rewriting `Item._nodeid`, which pytest 9 no longer reads: under pytest 9 the group was split over both
workers, and the two SLURM jobs ran at once, each waiting for the other's nodes (pyproject.toml keeps
pytest below 9 for it)."""

import os
import subprocess
import sys

GROUPED = """
import os, time
import pytest

@pytest.mark.xdist_group("together")
@pytest.mark.parametrize("n", [0, 1])
def test_grouped(n):
    start = time.monotonic()
    time.sleep(1)
    with open(os.environ["GROUP_LOG"], "a") as log:
        log.write(f"{os.environ['PYTEST_XDIST_WORKER']} {start} {time.monotonic()}\\n")
"""


def test_an_xdist_group_runs_on_one_worker_one_test_after_the_other(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    log = tmp_path / "log"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "GROUP_LOG": str(log)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    first, second = (line.split() for line in log.read_text().splitlines())
    assert first[0] == second[0], "the group was split over two workers"
    assert float(second[1]) >= float(first[2]), "the group's tests ran at once"
