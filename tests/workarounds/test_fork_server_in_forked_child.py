"""A process forked from one whose fork server is running starts workers from a fork server of its own."""

import subprocess
import sys

PROBE = """
import multiprocessing, multiprocessing.forkserver, os, sys
if sys.argv[1] == "workaround":
    from bert_imdb.workarounds.fork_server_in_forked_child import forget_fork_server_in_forked_children
    forget_fork_server_in_forked_children()
multiprocessing.forkserver.ensure_running()  # this process's loader had workers
pid = os.fork()  # a rank of ddp_fork
if pid == 0:
    try:
        worker = multiprocessing.get_context("forkserver").Process(target=print)
        worker.start()
        worker.join()
        os._exit(0)
    except ChildProcessError:
        os._exit(3)
os._exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def run(mode: str) -> int:
    return subprocess.run([sys.executable, "-c", PROBE, mode], timeout=120).returncode


def test_a_forked_child_starts_workers_with_the_workaround():
    assert run("workaround") == 0


def test_cpython_still_refuses_without_it():
    # When this fails, CPython no longer checks the inherited server with waitpid: drop the workaround.
    assert run("plain") == 3
