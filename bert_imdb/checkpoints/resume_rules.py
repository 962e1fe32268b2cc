"""What a resumed fit must share with the checkpoint it resumes, and the one-line refusal when it does not.

A resumed run must train the batches the stopped run would have trained next, on the model it trained.
The model and data settings are checked from the config, before LightningCLI builds the classes (it would
otherwise replace the model's arguments by the checkpoint's); the processes, batch size and accumulation
once the Trainer exists (callbacks/exact_resume.py). Both read this one table.
"""

from bert_imdb.errors import UserError

# Each setting, and where a checkpoint keeps it: (part of the checkpoint, key there). "callbacks/<name>" is
# a callback's state.
RESUME_MUST_MATCH = {
    "model.model_name_or_path": ("hyper_parameters", "model_name_or_path"),
    "model.nsp": ("hyper_parameters", "nsp"),
    "data.max_length": ("datamodule_hyper_parameters", "max_length"),
    "data.batch_size": ("datamodule_hyper_parameters", "batch_size"),
    "processes": ("callbacks/ExactResume", "world_size"),
    "trainer.accumulate_grad_batches": ("callbacks/ExactResume", "accumulate_grad_batches"),
}


def saved_setting(checkpoint: dict, name: str):
    """The value of setting `name` the checkpoint was trained with (None where it did not record it)."""
    part, key = RESUME_MUST_MATCH[name]
    if part.startswith("callbacks/"):
        return checkpoint.get("callbacks", {}).get(part.removeprefix("callbacks/"), {}).get(key)
    return checkpoint.get(part, {}).get(key)


def check_same_model_class(ckpt_path, checkpoint: dict, class_path: str) -> None:
    """Stop a resume whose config builds another module than the checkpoint holds: Lightning would load the
    weights into whatever the config builds."""
    built = class_path.rpartition(".")[2]
    saved = checkpoint["hyper_parameters"].get("_class_path", built).rpartition(".")[2]
    if saved != built:
        raise UserError(
            f"checkpoint {ckpt_path} holds a {saved}, the config builds a {built}: "
            "resume with the run's own config.yaml"
        )


def check_resumable(ckpt_path, checkpoint: dict, now: dict) -> None:
    """Stop, in one line naming each setting and both values, a resume where a setting of `now` (names of
    RESUME_MUST_MATCH: this run's values) differs from the checkpoint's. Unrecorded values are not compared."""
    changed = [
        (name, saved_setting(checkpoint, name), value)
        for name, value in now.items()
        if value is not None and saved_setting(checkpoint, name) not in (None, value)
    ]
    if changed:
        then = ", ".join(f"{name}={was}" for name, was, _ in changed)
        is_now = ", ".join(f"{name}={value}" for name, _, value in changed)
        raise UserError(
            f"checkpoint {ckpt_path} was trained with {then}, this run has {is_now}: resume with the run's "
            "own config.yaml on as many processes (trainer.devices x trainer.num_nodes), or start a new fit "
            "without --ckpt_path"
        )
