"""The ranges of the numeric settings Lightning leaves unchecked (or checks in a traceback): each refused in
one line that gives the valid range, before anything is built."""

from bert_imdb.errors import UserError

# numpy's (and so Lightning's) seeds: an unsigned 32-bit integer.
MAX_SEED = 2**32 - 1

# Trainer settings: (least, greatest, whether unset is allowed). Floats of the limit_* and interval
# settings are fractions (of the epoch's batches), so at most 1.0 there.
TRAINER_RANGES = {
    "accumulate_grad_batches": (1, None, False),
    "max_epochs": (-1, None, True),
    "min_epochs": (0, None, True),
    "max_steps": (-1, None, False),
    "min_steps": (0, None, True),
    "check_val_every_n_epoch": (1, None, True),
    "log_every_n_steps": (1, None, True),
    "num_sanity_val_steps": (-1, None, True),
    "gradient_clip_val": (0, None, True),
    "val_check_interval": (0, None, True),
    "overfit_batches": (0, None, False),
    "limit_train_batches": (0, None, True),
    "limit_val_batches": (0, None, True),
    "limit_test_batches": (0, None, True),
    "limit_predict_batches": (0, None, True),
    "reload_dataloaders_every_n_epochs": (0, None, False),
}


def _describe(least, greatest, unset: bool) -> str:
    upper = f" to {greatest}" if greatest is not None else " or more"
    return f"{least}{upper}" + (", or leave it unset" if unset else "")


def check_numeric_settings(config) -> None:
    """Refuse a seed or a Trainer number outside its range, naming the range."""
    seed = config.get("seed_everything")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= MAX_SEED:
        raise UserError(f"seed_everything={seed} is out of range: use an integer from 0 to {MAX_SEED}")
    trainer = config.get("trainer") or {}
    for name, (least, greatest, unset) in TRAINER_RANGES.items():
        value = trainer.get(name)
        if value is None and unset:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # "1:00:00"-style values and types jsonargparse already checks
        fraction = isinstance(value, float) and name.startswith(("limit_", "overfit_", "val_check_"))
        top = 1.0 if fraction else greatest
        low_ok = value > least if name == "val_check_interval" else value >= least
        if not low_ok or (top is not None and value > top):
            if fraction:
                what = f"a fraction above {least} up to 1.0, or a whole number of batches"
                if not name.startswith("val_check_"):
                    what = "a fraction from 0.0 to 1.0, or a whole number of batches (0 or more)"
            else:
                what = _describe(least + (1 if name == "val_check_interval" else 0), top, unset)
            raise UserError(f"trainer.{name}={value} is out of range: use {what}")


# Settings with which a fit trains no step at all: Lightning ends such a fit at once, with exit 0 and no
# checkpoint, which a script reads as a finished run.
TRAINS_NOTHING = {"max_epochs": 0, "max_steps": 0, "limit_train_batches": 0}


def check_fit_trains(trainer) -> None:
    """Refuse a fit whose Trainer settings leave it nothing to train, naming the setting."""
    for name, nothing in TRAINS_NOTHING.items():
        value = trainer.get(name)
        if value == nothing and not isinstance(value, bool):
            raise UserError(
                f"trainer.{name}={value} leaves fit nothing to train: raise it, or run validate or test "
                "to evaluate without training"
            )
