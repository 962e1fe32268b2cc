"""What a resumed fit must share with the checkpoint it resumes, and the one-line refusal when it does not.

A resumed run must train the batches the stopped run would have trained next, on the model it trained.
The model and data settings are checked from the config, before LightningCLI builds the classes (it would
otherwise replace the model's arguments by the checkpoint's); the processes, batch size and accumulation
once the Trainer exists (resume/exact_resume.py). Both read this one table.
"""

from bert_imdb.errors import UserError
from bert_imdb.tasks import data_module_state

MODEL, DATA = "hyper_parameters", "datamodule_hyper_parameters"
NOT_RECORDED = object()  # a setting a checkpoint or a config does not have (older, or another task's)
# Each setting that fixes the model, the data order, the train/validation split or the list of steps, and
# where a checkpoint keeps it: (part of the checkpoint, key there). "callbacks/<name>" is a callback's state,
# "datamodule state" what the data module's state_dict recorded. A data module without the key (the MLM
# one has no truncation, the classifier's no mlm_probability) is not checked for it.
RESUME_MUST_MATCH = {
    "model.model_name_or_path": (MODEL, "model_name_or_path"),
    "model.nsp": (MODEL, "nsp"),
    "data.max_length": (DATA, "max_length"),
    "data.batch_size": (DATA, "batch_size"),
    "data.seed": (DATA, "seed"),
    "data.val_fraction": (DATA, "val_fraction"),
    "data.max_train_samples": (DATA, "max_train_samples"),
    "data.truncation": (DATA, "truncation"),
    "data.group_by_length": (DATA, "group_by_length"),
    "data.max_tokens": (DATA, "max_tokens"),
    "data.val_reviews": (DATA, "val_reviews"),
    "data.max_train_reviews": (DATA, "max_train_reviews"),
    "data.line_by_line": (DATA, "line_by_line"),
    "data.mlm_probability": (DATA, "mlm_probability"),
    "data.whole_word_mask": (DATA, "whole_word_mask"),
    "data.pad_to_multiple_of (resolved for the device)": ("datamodule state", "pad_to_multiple_of"),
    "processes": ("callbacks/ExactResume", "world_size"),
    "trainer.accumulate_grad_batches": ("callbacks/ExactResume", "accumulate_grad_batches"),
}
# Checked from the config, before the classes are built: the model's and data module's own arguments.
IN_CONFIG = [name for name, (part, _) in RESUME_MUST_MATCH.items() if part in (MODEL, DATA)]


def saved_setting(checkpoint: dict, name: str):
    """The value of setting `name` the checkpoint was trained with, or NOT_RECORDED (None is a value)."""
    part, key = RESUME_MUST_MATCH[name]
    if part.startswith("callbacks/"):
        found = checkpoint.get("callbacks", {}).get(part.removeprefix("callbacks/"), {})
    elif part == "datamodule state":
        found = data_module_state(checkpoint)
    else:
        found = checkpoint.get(part, {})
    return found.get(key, NOT_RECORDED)


def check_same_model_class(ckpt_path, checkpoint: dict, class_path: str) -> None:
    """Stop a resume whose config builds another module than the checkpoint holds: Lightning would load the
    weights into whatever the config builds."""
    built = class_path.rpartition(".")[2]
    saved = checkpoint["hyper_parameters"].get("_class_path", built).rpartition(".")[2]
    if saved != built:
        raise UserError(
            f"checkpoint {ckpt_path} holds a {saved}, the config builds a {built}: "
            "resume with the run's own config.yaml (to fine-tune from pre-training, export the checkpoint and "
            "start from the folder with --model.model_name_or_path)"
        )


def check_resumable(ckpt_path, checkpoint: dict, now: dict) -> None:
    """Stop, in one line naming each setting and both values, a resume where a setting of `now` (names of
    RESUME_MUST_MATCH: this run's values) differs from the checkpoint's. NOT_RECORDED on either side is not
    compared."""
    pairs = [(name, saved_setting(checkpoint, name), value) for name, value in now.items()]
    changed = [
        (name, was, value) for name, was, value in pairs if NOT_RECORDED not in (was, value) and was != value
    ]
    if changed:
        then = ", ".join(f"{name}={was}" for name, was, _ in changed)
        is_now = ", ".join(f"{name}={value}" for name, _, value in changed)
        raise UserError(
            f"checkpoint {ckpt_path} was trained with {then}, this run has {is_now}: resume with the run's "
            "own config.yaml on as many processes (trainer.devices x trainer.num_nodes), or start a new fit "
            "without --ckpt_path"
        )
