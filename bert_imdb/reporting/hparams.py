"""TensorBoard's HPARAMS tab: one row per run, holding its real hyperparameters and its final validation's
and test's accuracy and F1 (with their 95% intervals) and calibration error (before and after temperature
scaling)."""

from torch.utils.tensorboard.summary import hparams

from bert_imdb.workarounds.tensorboard_file_writer import file_writer

# Declared by every run's summary, whichever are logged at the time: a run's fit and its test then fill
# one row with all of them side by side.
# An evaluation's final scores: accuracy and F1 with their 95% intervals, and the calibration error before
# and after temperature scaling.
FINAL_SCORES = ("acc", "acc_ci_low", "acc_ci_high", "f1", "f1_ci_low", "f1_ci_high", "ece", "ece_calibrated")
HP_METRICS = tuple(f"hp/{split}_{name}" for split in ("val", "test") for name in FINAL_SCORES)
# The Trainer settings that change what a run learns.
TRAINER_HYPERPARAMETERS = ("precision", "max_epochs", "max_steps", "accumulate_grad_batches", "world_size")


def hyperparameters(trainer) -> dict:
    """The run's model, data and trainer hyperparameters, without LightningCLI's own entries (`_class_path`,
    `_instantiator`), which describe how it was built, not what it learned with; and, where a resume changed
    settings on purpose, `resume.changes`: what changed, from what, to what, from which step."""
    model = trainer.lightning_module.hparams
    data = trainer.datamodule.hparams if trainer.datamodule is not None else {}
    found = {f"model.{k}": v for k, v in model.items()} | {f"data.{k}": v for k, v in data.items()}
    found |= {f"trainer.{k}": getattr(trainer, k) for k in TRAINER_HYPERPARAMETERS}
    # resume/exact_resume.py's ExactResume keeps them (found by its attribute: reporting sits below resume).
    changes = [c for callback in trainer.callbacks for c in getattr(callback, "changes", None) or []]
    if changes:
        found["resume.changes"] = "; ".join(
            f"{c['setting']} {c['from']} to {c['to']} from step {c['step']}" for c in changes
        )
    return {
        k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in found.items() if "._" not in k
    }


def log_hparams(writer, params: dict, metrics: dict[str, float], step: int) -> None:
    """Final metrics as scalars at `step` (the step of the weights they measure), and the HPARAMS summaries
    that tie the run's hyperparameters to all of HP_METRICS (torch's `hparams` reads only their names here;
    TensorBoard shows the scalars)."""
    for name, value in metrics.items():
        writer.add_scalar(name, value, step)
    events = file_writer(writer)  # as Lightning's TensorBoardLogger writes them
    for summary in hparams(params, dict.fromkeys(HP_METRICS, 0.0)):
        events.add_summary(summary, step)
