"""The resolved settings a fit trains with, recorded in every checkpoint, and the resume check against them:
deny by default.

Every setting of the resolved config (the model's, the data module's, the Trainer's and every callback's,
whatever a later version adds to any of them) is recorded. A resume whose settings differ from the
checkpoint's is refused, naming each setting with both values, unless the setting is on MAY_CHANGE (it
cannot change what is trained), or the user allows it by name (`--resume_allow model.learning_rate`). So a
new argument of any class is checked without anyone adding it to a list.
"""

import importlib
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from bert_imdb.errors import UserError

# What may differ on resume because it cannot change what is trained: where and how a run reports and saves,
# how its data is loaded, where it runs (the number of processes is checked apart, by ExactResume), and how
# long it goes on. docs/resume.md says why for each. Patterns as fnmatch reads them.
MAY_CHANGE = (
    # The command itself: what to resume, which files held the settings, what is allowed to change.
    "ckpt_path",
    "weights_only",
    "config",
    "resume_allow",
    "runtime",
    "test_after_fit",
    "onnx_file",
    # Reporting and progress.
    "trainer.logger",
    "trainer.logger.*",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "trainer.profiler",
    "trainer.profiler.*",
    "lr_monitor.*",
    "throughput.*",
    "validation_record.*",
    "predictions.*",
    # Checkpoint files: where, how often, how many. Saves come only at exact points (LastCheckpoint).
    "trainer.enable_checkpointing",
    "trainer.default_root_dir",
    "checkpoint.*",
    "last_checkpoint.*",
    # Where it runs: resumed on another machine or device. The process count must match (ExactResume).
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.strategy.*",
    # Loading the same batches in other processes (a mid-epoch resume needs the same count: ExactResume).
    "data.num_workers",
    "data.num_proc",
    # Evaluation outside training: validation metrics are exact for any batch size; test and predict
    # never touch training.
    "data.eval_batch_size",
    "data.max_test_samples",
    "data.test_min_tokens",
    "data.predict_file",
    "trainer.limit_test_batches",
    "trainer.limit_predict_batches",
    "trainer.inference_mode",
    # How long it goes on: the steps already trained stay what they were.
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.max_time",
    "trainer.num_sanity_val_steps",
    "early_stopping.patience",
)

# Lightning's callbacks that only observe (a project callback says so itself with `changes_training =
# False`): they are left out of the record, so they may be added or removed on resume.
OBSERVING_CALLBACKS = (
    "LearningRateMonitor",
    "DeviceStatsMonitor",
    "ModelSummary",
    "RichModelSummary",
    "TQDMProgressBar",
    "RichProgressBar",
)


def _callback_observes(class_path: str) -> bool:
    module, _, name = class_path.rpartition(".")
    if name in OBSERVING_CALLBACKS:
        return True
    try:  # the class itself says whether it changes training
        return getattr(getattr(importlib.import_module(module), name), "changes_training", True) is False
    except (ImportError, AttributeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """A value a checkpoint can hold and torch.load(weights_only=True) reads back."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _walk(prefix: str, value: Any, flat: dict) -> None:
    if isinstance(value, dict):
        if "class_path" in value:
            flat[f"{prefix}.class_path"] = value["class_path"]
            for key in ("init_args", "dict_kwargs"):
                for name, arg in (value.get(key) or {}).items():
                    _walk(f"{prefix}.{name}", arg, flat)
            return
        for name, arg in value.items():
            _walk(f"{prefix}.{name}" if prefix else name, arg, flat)
    elif prefix == "trainer.callbacks" and isinstance(value, list):
        # By class, not position: adding an observer must not shift the others.
        seen: dict[str, int] = {}
        for callback in value:
            path = callback.get("class_path", "") if isinstance(callback, dict) else str(callback)
            if _callback_observes(path):
                continue
            name = path.rpartition(".")[2]
            seen[name] = seen.get(name, 0) + 1
            key = name if seen[name] == 1 else f"{name}#{seen[name]}"
            _walk(f"trainer.callbacks.{key}", callback if isinstance(callback, dict) else {}, flat)
    else:
        flat[prefix] = _plain(value)


def recorded_settings(config: Any) -> dict[str, Any]:
    """Every resolved setting of a fit's config (a jsonargparse Namespace or a dict), by its dotted name."""
    as_dict = config.as_dict() if hasattr(config, "as_dict") else dict(config)
    flat: dict[str, Any] = {}
    _walk("", as_dict, flat)
    # A callback list given as null or empty is the same: no callbacks that change training.
    if flat.get("trainer.callbacks") in (None, []):
        flat.pop("trainer.callbacks", None)
    return flat


def may_change(name: str, allowed: Iterable[str] = ()) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in (*MAY_CHANGE, *allowed))


NONE = "(none)"


def changed_settings(saved: dict, now: dict, allowed: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
    """(name, checkpoint's value, this run's) for each setting that differs and may not change: those
    both sides record, and the classes (`*.class_path`) on either side, so that a callback added or removed
    counts as a change while an argument one version of a class lacks does not."""
    allowed = tuple(allowed)
    names = set(saved) & set(now) | {name for name in set(saved) | set(now) if name.endswith(".class_path")}
    return [
        (name, saved.get(name, NONE), now.get(name, NONE))
        for name in sorted(names)
        if saved.get(name, NONE) != now.get(name, NONE) and not may_change(name, allowed)
    ]


def unchecked_settings(saved: dict, now: dict) -> list[str]:
    """Arguments only one side records of a class both have (one added or removed by another version)."""
    return sorted(
        name
        for name in set(saved) ^ set(now)
        if not may_change(name)
        and not name.endswith(".class_path")
        and f"{name.rpartition('.')[0]}.class_path" not in set(saved) ^ set(now)
    )


def check_settings(ckpt_path: Any, saved: dict, now: dict, allowed: Iterable[str] = ()) -> None:
    """Refuse, in one line naming each setting and both values, a resume that changes what is trained."""
    changed = changed_settings(saved, now, allowed)
    if changed:
        then = ", ".join(f"{name}={was}" for name, was, _ in changed)
        is_now = ", ".join(f"{name}={value}" for name, _, value in changed)
        names = " ".join(name for name, _, _ in changed)
        raise UserError(
            f"checkpoint {ckpt_path} was trained with {then}, this run has {is_now}: resume with the run's "
            f"own config.yaml, start a new fit without --ckpt_path, or allow the change on purpose with "
            f"--resume_allow {names} (docs/resume.md)"
        )


def check_loader_workers(ckpt_path: Any, checkpoint: dict, saved: dict, now: dict) -> None:
    """Refuse another `data.num_workers` where the checkpoint stopped inside an epoch: the training loader
    resumes from its own state, which it keeps per worker process (torchdata's StatefulDataLoader), so it
    cannot be read with another count. At an epoch's end the loader starts afresh, and any count goes."""
    name = "data.num_workers"
    if saved.get(name, now.get(name)) == now.get(name):
        return
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {})
    done = progress.get("current", {}).get("completed", 0)
    if done and not progress.get("is_last_batch", True):
        raise UserError(
            f"checkpoint {ckpt_path} stopped inside an epoch (after batch {done}), with {name}={saved[name]}, "
            f"and the data loader's place there is kept per worker: resume with {name}={saved[name]}, or from "
            "a checkpoint at an epoch's end, where any count goes"
        )


def check_allowed_names(allowed: Iterable[str], now: dict) -> None:
    """Stop on a --resume_allow name that is no setting of this run (a typo would allow nothing)."""
    unknown = [name for name in allowed if not any(fnmatchcase(key, name) for key in now)]
    if unknown:
        raise UserError(
            f"--resume_allow {' '.join(unknown)}: no such setting in this run (names as --print_config "
            "writes them, e.g. model.learning_rate)"
        )
