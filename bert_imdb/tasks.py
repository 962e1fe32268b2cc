"""The tasks bert_imdb trains, in one registry: each Lightning module by its class name (as checkpoints
record it), with the data module it trains on. Each module also says what it reports: `checkpoint_metric`
(what ModelCheckpoint keeps the best of) and `card_metrics` (what an export's model card shows)."""

import importlib

import lightning as L

from bert_imdb.data.pretraining import IMDbPretrainingDataModule
from bert_imdb.data.sentiment import IMDbDataModule
from bert_imdb.errors import UserError
from bert_imdb.models.classifier import SentimentClassifier
from bert_imdb.models.masked_lm import MaskedLanguageModel

TASKS: dict[str, tuple[type[L.LightningModule], type[L.LightningDataModule]]] = {
    model.__name__: (model, data)
    for model, data in (
        (SentimentClassifier, IMDbDataModule),
        (MaskedLanguageModel, IMDbPretrainingDataModule),
    )
}
DATA_MODULES = {data for _, data in TASKS.values()}


def check_pairing(model_class: type, data_class: type) -> None:
    """Stop a config that puts a module on the other task's data module."""
    expected = TASKS.get(model_class.__name__, (None, None))[1]
    if expected is not None and data_class in DATA_MODULES and data_class is not expected:
        raise UserError(
            f"{model_class.__name__} trains on {expected.__name__}, not {data_class.__name__}: "
            f"set data.class_path to bert_imdb.{expected.__name__}"
        )


def module_of_checkpoint(checkpoint: dict, ckpt_path: str) -> type[L.LightningModule]:
    """The module class a checkpoint holds, by the class path LightningCLI recorded in it."""
    # Checkpoints of SentimentClassifier from before MLM existed carry no class path.
    name = checkpoint["hyper_parameters"].get("_class_path", "SentimentClassifier").rpartition(".")[2]
    if name not in TASKS:
        raise UserError(f"{ckpt_path} holds a {name}: bert_imdb knows {' and '.join(TASKS)} checkpoints")
    return TASKS[name][0]


def data_module_state(checkpoint: dict) -> dict:
    """What the data module kept in the checkpoint (its sizes; empty for checkpoints written before it did):
    Lightning keeps it under the data module's qualified class name."""
    names = {data.__qualname__ for data in DATA_MODULES}
    return next((v for k, v in checkpoint.items() if k in names and isinstance(v, dict)), {})


def import_class(class_path: str) -> type:
    """The class a config names by its import path (a module, data module or logger's class_path)."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)
