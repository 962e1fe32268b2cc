"""Stopping the processes Lightning's `ddp` launcher started, from the first process, without being killed
in turn: the launcher's observer thread (`_ChildProcessObserver`, read from Lightning 2.6.6) SIGKILLs the
first process within 5 s of seeing any child end with a non-zero status, which would cut short the one line
the run ends in. The observer polls the launcher's own `procs` list: the stopped children are reaped and
taken off it, so that it finds nothing left to watch.

When to drop: tests/workarounds/test_launched_processes.py fails when the observer stops reading that list.
"""

import signal
import subprocess


def stop_launched_processes(strategy) -> None:
    """SIGKILL and reap every process the strategy's launcher started from this one (none on other ranks,
    under SLURM, or with `ddp_fork`/`ddp_spawn`, whose parent torch stops itself)."""
    launcher = getattr(strategy, "launcher", None)
    procs = getattr(launcher, "procs", None)
    if not isinstance(procs, list) or not all(isinstance(p, subprocess.Popen) for p in procs):
        return
    launcher.kill(signal.SIGKILL)
    for proc in procs:
        proc.wait()
    procs.clear()
