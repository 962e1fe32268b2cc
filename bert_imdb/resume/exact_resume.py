"""ExactResume: every process's random generators in each checkpoint, and the resume refused where the
checkpoint cannot be continued exactly."""

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from bert_imdb.distributed import TimedGroup
from bert_imdb.resume.random_state import rng_states, seed_generators, set_rng_states
from bert_imdb.resume.rules import NOT_RECORDED, check_resumable
from bert_imdb.resume.settings_record import changed_settings, check_loader_workers, check_settings


class ExactResume(Callback):
    """Makes a resumed run go on exactly as if it had never stopped, on every process.

    Lightning saves the model, optimizer, scheduler, loops and the position of a StatefulDataLoader, but not
    the random generators (dropout, MLM masking): this callback keeps every process's own in each checkpoint,
    and `restore_generators` gives each process its own back. The fit loop calls it
    (workarounds/fit_loop.py), after everything that draws random numbers while a run starts, and also
    applies the saved data position there.

    With several processes, each starts training from generators seeded by (seed, rank): seed_everything
    gives every process the same seed, so each would otherwise draw the same dropout and MLM masks.

    A checkpoint resumes only with the number of processes, batch size and gradient accumulation it was
    trained with (resume/rules.py): anything else would train other batches than the run that
    was stopped. And it records the run's resolved settings (`settings`, set by the CLI), against which
    every resume is checked, whatever found the checkpoint (a path, last, hpc, SLURM's own requeue):
    resume/settings_record.py. A change allowed on purpose (`allowed`) is applied to the optimizer for
    real, and recorded with the step it took effect at.
    """

    def __init__(self):
        self._saved: dict[str, Any] | None = None
        self._trainer = None
        self._group: TimedGroup | None = None
        # The CLI's: this run's resolved settings, and the names the user allowed to change on resume.
        self.settings: dict[str, Any] | None = None
        self.allowed: tuple[str, ...] = ()
        # Changes allowed on resume so far: [{"setting", "from", "to", "step"}], kept in every checkpoint.
        self.changes: list[dict[str, Any]] = []
        self._to_apply: dict[str, Any] = {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer
        if stage == "fit" and trainer.world_size > 1:
            self._group = TimedGroup(trainer)  # where each save gathers every process's generators

    def state_dict(self) -> dict[str, Any]:
        trainer, states = self._trainer, rng_states()
        ranks = [states]
        if self._group is not None:
            # Every process saves a checkpoint (only rank 0 writes it): gather each one's generators.
            ranks = self._group.gather(states, "a checkpoint save")
        return {
            "ranks": ranks,
            "world_size": trainer.world_size if trainer is not None else 1,
            "accumulate_grad_batches": trainer.accumulate_grad_batches if trainer is not None else 1,
            **({"settings": self.settings} if self.settings is not None else {}),
            "changes": self.changes,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = state_dict

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != "fit":  # evaluating or predicting from a checkpoint resumes nothing
            return
        data = trainer.datamodule.hparams if trainer.datamodule is not None else {}
        now = {
            "processes": trainer.world_size,
            "data.batch_size": data.get("batch_size", NOT_RECORDED),
            "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
        }
        if hasattr(trainer.datamodule, "pad_multiple"):
            now["data.pad_to_multiple_of (resolved for the device)"] = trainer.datamodule.pad_multiple()
        check_resumable(trainer.ckpt_path, checkpoint, now)
        saved = checkpoint.get("callbacks", {}).get(self.state_key, {})
        self.changes = list(saved.get("changes", []))
        if self.settings is None or "settings" not in saved:
            return  # built without the CLI, or a checkpoint from before settings were recorded (the CLI says)
        check_settings(trainer.ckpt_path, saved["settings"], self.settings, self.allowed)
        check_loader_workers(trainer.ckpt_path, checkpoint, saved["settings"], self.settings)
        step = checkpoint.get("global_step", 0)
        for name, was, value in changed_settings(saved["settings"], self.settings):
            self.changes.append({"setting": name, "from": was, "to": value, "step": step})
            if name.startswith("model."):
                # The optimizer and its schedule are built from hparams (after this hook), then given the
                # checkpoint's state, whose learning rate and decay on_train_start replaces.
                pl_module.hparams[name.removeprefix("model.")] = value
                self._to_apply[name.removeprefix("model.")] = value

    def on_train_start(self, trainer, pl_module) -> None:
        to_apply, self._to_apply = self._to_apply, {}
        if to_apply and hasattr(pl_module, "apply_optimizer_settings"):
            pl_module.apply_optimizer_settings(**to_apply)

    def restore_generators(self, trainer) -> bool:
        """Give this process the generators of the checkpoint being resumed (True), or, starting afresh with
        several processes, seed them by (seed, rank) (False)."""
        saved, self._saved = self._saved, None
        if saved is None:
            if trainer.world_size > 1:
                seed_generators(torch.initial_seed(), trainer.global_rank)
            return False
        # Checkpoints from before every rank's generators were kept hold one process's, unlisted.
        ranks = saved.get("ranks", [saved])
        set_rng_states(ranks[trainer.global_rank])
        return True
