"""ExactResume: every process's random generators in each checkpoint, and the resume refused where the
checkpoint cannot be continued exactly."""

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from bert_imdb.checkpoints.random_state import rng_states, seed_generators, set_rng_states
from bert_imdb.checkpoints.resume_rules import NOT_RECORDED, check_resumable


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
    trained with (checkpoints/resume_rules.py): anything else would train other batches than the run that
    was stopped.
    """

    def __init__(self):
        self._saved: dict[str, Any] | None = None
        self._trainer = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer, states = self._trainer, rng_states()
        ranks = [states]
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            # Every process saves a checkpoint (only rank 0 writes it): gather each one's generators.
            ranks = [None] * trainer.world_size
            torch.distributed.all_gather_object(ranks, states)
        return {
            "ranks": ranks,
            "world_size": trainer.world_size if trainer is not None else 1,
            "accumulate_grad_batches": trainer.accumulate_grad_batches if trainer is not None else 1,
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
