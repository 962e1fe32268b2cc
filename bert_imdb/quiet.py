"""Library messages that tell a user of this CLI nothing they could act on, kept off the terminal.

Each is filtered by its text, so a reworded message shows again (tests/test_quiet.py runs fit and predict and
fails when one shows).
"""

import logging
import re
import warnings

# (module that warns, start of the message): warnings.warn messages.
WARNINGS = (
    # torchdata 0.11's StatefulDataLoader calls a torch function torch deprecated; nothing to do here.
    "'set_vital' is deprecated",
    # Lightning 2.6 uses a torch API torch deprecated.
    "`isinstance(treespec, LeafSpec)` is deprecated",
    # Our predict stream reports its exact length per process; Lightning cannot know it is exact.
    "Your `IterableDataset` has `__len__` defined",
    # Predictions carry each review's position in the file (`index`); Lightning's batch indices are unused.
    "Couldn't infer the batch indices fetched from your dataloader",
    # torch's ONNX exporter, on the batch and sequence axes that every input of the export shares.
    "# The axis name: ",
)
# (logger, start of the message): logging records.
RECORDS = (
    # Advertisements for cloud services (Lightning logs them through whichever of its two rank_zero loggers
    # was imported last).
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip"),
    ("lightning.fabric.utilities.rank_zero", "💡 Tip"),
    # The reviews are cut to data.max_length by bert_imdb.data.truncation after tokenizing them whole (to
    # keep the head and the tail): no sequence this long ever reaches the model.
    ("transformers.tokenization_utils_base", "Token indices sequence length is longer than"),
    # torch's ONNX exporter lists torchvision's operators it cannot register; an encoder uses none.
    ("torch.onnx._internal.exporter._registration", "torchvision is not installed"),
)


class _DropStartingWith(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.start)


def quiet_library_noise() -> None:
    """Install the filters (idempotent: each is added once per process)."""
    for start in WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(start))
    for name, start in RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropStartingWith) and f.start == start for f in logger.filters):
            logger.addFilter(_DropStartingWith(start))
