"""EarlyStop: stop fitting once the monitored metric stops improving, off unless asked, exact on resume."""

from typing import Literal

from lightning.pytorch.callbacks import EarlyStopping

from bert_imdb.errors import UserError


class EarlyStop(EarlyStopping):
    """Lightning's EarlyStopping, as a CLI option (`--early_stopping.patience N`).

    - Off while `patience` is unset, so every run keeps one callback and one checkpoint layout.
    - It counts validations: it looks at the metric after each one (Lightning's looks at an epoch's end
      when validation runs once an epoch, which fails with "metric not available" when `max_steps` ends an
      epoch before its validation, and which a checkpoint saved at that epoch's end does not hold).
    - By default it watches what the best checkpoint is picked by (monitor and mode "auto": val/acc, max,
      for the classifier; val/loss, min, for MLM), resolved by the CLI like the checkpoint's.
    - Exact on resume. Lightning keeps the wait count and best score in checkpoints, so a run resumed
      before the stop stops at the same validation as an uninterrupted one; but a run resumed from a
      checkpoint saved once it had stopped would train on (Lightning does not keep that it should stop).
      Here it stops at once when the wait already reached `patience`, the patience of this run: Lightning
      would restore the saved one, so a resume with a larger patience goes on training, as asked.
    """

    def __init__(
        self,
        patience: int | None = None,
        monitor: str = "auto",
        mode: Literal["auto", "min", "max"] = "auto",
        min_delta: float = 0.0,
        check_finite: bool = True,
        verbose: bool = False,
    ):
        """
        Args:
            patience: Validations in a row without improvement after which fitting stops; unset: never stop
                early. A validation runs every epoch, or every `trainer.val_check_interval` batches.
            monitor: The metric; "auto": the one checkpoint.monitor resolves to.
            mode: "max" if the metric should rise, "min" if it should fall; "auto": checkpoint.mode's.
            min_delta: The least change that counts as an improvement.
            check_finite: Stop when the metric becomes NaN or infinite.
            verbose: Say at each validation whether it improved.
        """
        if patience is not None and patience < 1:
            raise UserError(
                f"early_stopping.patience={patience} must be at least 1, or unset to never stop early"
            )
        # "auto" is resolved by the CLI before it builds this; built directly, it falls back to Lightning's.
        super().__init__(
            monitor=monitor,
            patience=patience or 0,
            mode="min" if mode == "auto" else mode,
            min_delta=min_delta,
            check_finite=check_finite,
            verbose=verbose,
            check_on_train_epoch_end=False,
        )
        self.enabled = patience is not None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.enabled and self.wait_count >= self.patience:
            trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.enabled:
            super().on_validation_end(trainer, pl_module)

    def load_state_dict(self, state_dict: dict) -> None:
        patience = self.patience
        super().load_state_dict(state_dict)
        self.patience = patience
