"""The collectives the project adds to Lightning's (the end of an evaluation, a checkpoint's random states,
a stop signal's agreement, the end of predict), each with a time limit: a process that never arrives
(stuck, or dead without taking the job down) ends the run in one line naming it, instead of a hang until
the scheduler's limit."""

import re
from datetime import timedelta
from typing import Any

import torch

from bert_imdb.errors import UserError
from bert_imdb.workarounds.launched_processes import stop_launched_processes
from bert_imdb.workarounds.process_group_timeout import process_group_timeout


class TimedGroup:
    """A gloo group of its own, whatever the training backend (torch's monitored_barrier, which names the
    ranks that did not arrive, runs only on gloo). Build it on every process at the same point, once every
    process is running (a `setup` hook): making the group is itself a collective.

    Args:
        trainer: The run's Trainer: its strategy's process-group timeout (`--trainer.strategy.timeout`,
            Lightning's default 30 min) is the limit, and its launcher holds the processes to stop.
        seconds: Another limit than the strategy's, in seconds.
        setting: The setting that gives `seconds`, said in the error.
    """

    def __init__(self, trainer, seconds: float | None = None, setting: str = "--trainer.strategy.timeout"):
        strategy = trainer.strategy
        self.timeout = timedelta(seconds=seconds) if seconds is not None else process_group_timeout(strategy)
        self.setting = setting
        self._strategy = strategy
        ready = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.group = torch.distributed.new_group(backend="gloo", timeout=self.timeout) if ready else None

    def wait(self, what: str) -> None:
        """Wait for every process at `what` (said in the error), or end the run naming the missing ranks."""
        if self.group is None:
            return
        try:
            torch.distributed.monitored_barrier(self.group, timeout=self.timeout, wait_all_ranks=True)
        except RuntimeError as err:
            raise self.missing(what, err) from None

    def gather(self, mine: Any, what: str) -> list[Any]:
        """Every process's `mine`, in rank order, once all have reached `what`: the barrier before the gather
        names a process that does not come; the gather itself then never waits."""
        if self.group is None:
            return [mine]
        self.wait(what)
        every = [None] * torch.distributed.get_world_size(self.group)
        torch.distributed.all_gather_object(every, mine, group=self.group)
        return every

    def missing(self, what: str, err: BaseException) -> UserError:
        """The one line a run ends in when a process did not reach `what`. The processes this one started
        (Lightning's launcher, on the first process of a machine) are stopped first: left running, they would
        wait for ever or fail later with a traceback of their own."""
        # Rank 0 names every rank that did not come; another rank knows only that rank 0 did not answer.
        ranks = re.search(r"[Rr]anks? ([\d, ]+) failed", str(err)) or re.search(r"from rank (\d+)", str(err))
        who = f"rank {ranks.group(1).strip()}" if ranks else "another process"
        stop_launched_processes(self._strategy)
        return UserError(
            f"{who} did not reach {what} within {self.timeout.total_seconds():.0f} s (stuck or dead): this "
            f"run stops; see that rank's log ({self.setting} sets the limit)"
        )
