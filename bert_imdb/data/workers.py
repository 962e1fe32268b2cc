"""How DataLoader workers start: from a fork server, not by forking the process that trains.

By the time a loader starts its workers, the training process has threads (TensorBoard's writer, tqdm's
monitor, Lightning's, gloo's): `fork` copies their locks as they are, and a worker that needs one held at
that moment waits for ever (seen in the suite: DDP predict, rank 1's first worker stuck inside fork, rank 0
at the predictions' barrier). A fork server is a fresh single-threaded process the workers are forked from.
"""

import multiprocessing

from bert_imdb.workarounds.fork_server_in_forked_child import forget_fork_server_in_forked_children

# Imported once by the fork server, before it forks any worker: each worker then starts with torch,
# transformers and the data modules in place instead of importing them again (seconds per worker).
PRELOAD = ["bert_imdb.data.sentiment", "bert_imdb.data.pretraining"]


def worker_start_method(num_workers: int) -> str | None:
    """The DataLoader's `multiprocessing_context`: "forkserver" where there are workers and the platform
    has it (Linux, macOS), else the default (no workers; Windows, which spawns)."""
    if num_workers == 0 or "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    multiprocessing.set_forkserver_preload(PRELOAD)  # read when the server starts; later calls change nothing
    forget_fork_server_in_forked_children()  # a DDP rank forked from this process starts its own
    return "forkserver"
