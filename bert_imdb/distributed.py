"""Waiting for the other processes with a time limit: a process that never arrives (stuck, or dead without
taking the job down) ends the run in one line naming it, instead of a hang until the scheduler's limit."""

import re
from datetime import timedelta

import torch

from bert_imdb.errors import UserError


class TimedBarrier:
    """A barrier on a gloo group of its own, whatever the training backend (torch's monitored_barrier, which
    names the ranks that did not arrive, runs only on gloo). Build it on every process at the same point:
    making the group is itself a collective.

    Args:
        seconds: How long a process waits for the others.
    """

    def __init__(self, seconds: float):
        self.timeout = timedelta(seconds=seconds)
        ready = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.group = torch.distributed.new_group(backend="gloo") if ready else None

    def wait(self, what: str) -> None:
        """Wait for every process at `what` (said in the error), or end the run naming the missing ranks."""
        if self.group is None:
            return
        try:
            torch.distributed.monitored_barrier(self.group, timeout=self.timeout, wait_all_ranks=True)
        except RuntimeError as err:
            ranks = re.search(r"[Rr]anks? ([\d, ]+) failed", str(err))
            missing = f"rank {ranks.group(1).strip()}" if ranks else "a rank"
            raise UserError(
                f"{missing} did not reach {what} within {self.timeout.total_seconds():.0f} s (stuck or "
                "dead): this process stops; see that rank's log"
            ) from None
