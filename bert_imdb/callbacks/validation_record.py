"""ValidationRecord: the metrics of the validation that scored a checkpoint's weights, kept in it."""

from lightning.pytorch.callbacks import Callback


class ValidationRecord(Callback):
    """Keeps in every checkpoint the metrics of the validation that scored its weights (none when the last
    validation ran at another step: a checkpoint every N steps, say), for the model card of its export."""

    def __init__(self):
        self._trainer = None
        self._step: int | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._step = trainer.global_step

    def state_dict(self) -> dict:
        trainer = self._trainer
        if trainer is None or self._step != trainer.global_step:
            return {}
        found = trainer.callback_metrics
        return {
            "step": self._step,
            "metrics": {k: float(v) for k, v in found.items() if k.startswith(("val/", "val_by_length/"))},
        }
