"""A process forked from one that started multiprocessing's fork server (a DDP rank of `ddp_fork`, forked
after a loader of the same process had workers) could start no worker: CPython's `ensure_running` (read from
3.11.7) checks that the server is alive with `os.waitpid`, and the server is no child of the forked process,
so it raises ChildProcessError. In a forked child, the parent's server is forgotten: the child starts its
own, as one started any other way does.

Private names: `multiprocessing.forkserver._forkserver` and its `_forkserver_pid`, `_forkserver_address`,
`_forkserver_alive_fd`. When to drop: tests/workarounds/test_fork_server_in_forked_child.py fails without the
workaround only while CPython has the check; when it passes without it, the check is gone.
"""

import multiprocessing.forkserver
import os

_installed = False


def forget_fork_server_in_forked_children() -> None:
    """Once per process: every process forked from this one starts its own fork server when it needs one."""
    global _installed
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget)
        _installed = True


def _forget() -> None:
    server = multiprocessing.forkserver._forkserver
    # The inherited descriptor stays open (the parent's server lives while any process holds it).
    server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None
