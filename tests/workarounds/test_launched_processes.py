"""Lightning's observer of the `ddp` launcher's children kills the first process when a child ends badly;
stopping the children through `stop_launched_processes` leaves the first process alive to say why."""

import subprocess
import time
from types import SimpleNamespace

from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

from bert_imdb.workarounds.launched_processes import stop_launched_processes


def observed(main: subprocess.Popen):
    children = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    launcher = SimpleNamespace(procs=children, kill=lambda signum: [c.send_signal(signum) for c in children])
    _ChildProcessObserver(main_pid=main.pid, child_processes=children, sleep_period=0.05).start()
    return children, SimpleNamespace(launcher=launcher)


def test_the_observer_kills_the_first_process_when_a_child_is_killed():
    main = subprocess.Popen(["sleep", "60"])  # stands for the first process
    children, strategy = observed(main)
    strategy.launcher.kill(9)  # Lightning's own kill: the observer then kills the first process
    assert main.wait(timeout=10) == -9
    for child in children:
        assert child.wait(timeout=10) == -9


def test_stopped_children_leave_the_first_process_alive():
    main = subprocess.Popen(["sleep", "60"])
    children, strategy = observed(main)
    stop_launched_processes(strategy)
    time.sleep(0.5)  # ten of the observer's polls
    assert main.poll() is None
    assert all(child.returncode == -9 for child in children)
    assert not strategy.launcher.procs
    main.kill()
    main.wait(timeout=10)


def test_lightnings_launcher_keeps_its_children_in_the_list_its_observer_watches():
    import inspect

    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = _SubprocessScriptLauncher(LightningEnvironment(), num_processes=2, num_nodes=1)
    assert launcher.procs == []
    assert "_launch_process_observer(self.procs)" in inspect.getsource(_SubprocessScriptLauncher.launch)
