"""The import paths of bert_imdb's classes before the package was split into subpackages (its flat
modules, up to commit dc65716), which checkpoints and saved config.yaml files name: every run's
config.yaml holds `bert_imdb.checkpointing.AtomicCheckpointIO`, and older ones
`bert_imdb.classifier.SentimentClassifier`. Each old module is registered as a module holding today's
objects, so a checkpoint or config of that time builds today's classes. tests/test_legacy_checkpoints.py
loads checkpoints written then and checks every path below. And the modules of resume/ before they
were gathered there: every run's config.yaml of that time names
`bert_imdb.checkpoints.atomic_io.AtomicCheckpointIO`.
"""

import importlib
import sys
import types

# Old module: {name: today's module}.
OLD_PATHS = {
    "bert_imdb.classifier": {"SentimentClassifier": "bert_imdb.models.classifier"},
    "bert_imdb.pretraining": {"MaskedLanguageModel": "bert_imdb.models.masked_lm"},
    "bert_imdb.pretraining_data": {"IMDbPretrainingDataModule": "bert_imdb.data.pretraining"},
    "bert_imdb.checkpointing": {
        "AtomicCheckpointIO": "bert_imdb.resume.atomic_io",
        "ExactResume": "bert_imdb.resume.exact_resume",
        "LastCheckpoint": "bert_imdb.resume.last_checkpoint",
    },
    "bert_imdb.throughput": {"TokenThroughputMonitor": "bert_imdb.callbacks.throughput"},
    "bert_imdb.predictions": {"PredictionWriter": "bert_imdb.callbacks.predictions"},
    "bert_imdb.slurm": {"SlurmRequeue": "bert_imdb.resume.slurm_requeue"},
    "bert_imdb.model_card": {"ValidationRecord": "bert_imdb.callbacks.validation_record"},
    "bert_imdb.checkpoints.atomic_io": {"AtomicCheckpointIO": "bert_imdb.resume.atomic_io"},
    "bert_imdb.callbacks.exact_resume": {"ExactResume": "bert_imdb.resume.exact_resume"},
    "bert_imdb.callbacks.last_checkpoint": {"LastCheckpoint": "bert_imdb.resume.last_checkpoint"},
    "bert_imdb.callbacks.slurm_requeue": {"SlurmRequeue": "bert_imdb.resume.slurm_requeue"},
    "bert_imdb.callbacks.stop_on_signal": {"StopOnSignal": "bert_imdb.resume.stop_on_signal"},
}


def register_old_paths() -> None:
    for old, names in OLD_PATHS.items():
        module = types.ModuleType(old, f"Moved: {', '.join(f'{n} to {m}' for n, m in names.items())}.")
        for name, new in names.items():
            setattr(module, name, getattr(importlib.import_module(new), name))
        sys.modules[old] = module
        parent, _, child = old.rpartition(".")
        try:
            importlib.import_module(parent)
        except ModuleNotFoundError:  # a package that is gone (bert_imdb.checkpoints)
            sys.modules[parent] = types.ModuleType(parent, "Moved: see bert_imdb._legacy.")
            setattr(sys.modules["bert_imdb"], parent.rpartition(".")[2], sys.modules[parent])
        setattr(sys.modules[parent], child, module)
