"""SaveConfigBesideExisting: each command's config saved into its run folder under a name of its own."""

from pathlib import Path

from lightning.pytorch.cli import SaveConfigCallback


class SaveConfigBesideExisting(SaveConfigCallback):
    """Saves the run's config as config.yaml, or config-1.yaml, ... where the run folder already has one.

    Lightning's callback either fails on an existing file or overwrites it; a resumed run must do neither.
    Without a run folder (`--trainer.logger false`, or MLflow's logger) nothing is saved.
    Rank 0 claims the name by creating the file exclusively, so two commands evaluating the same run at
    once (two `predict`s of one checkpoint, say) take different names instead of failing on the same one.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not trainer.loggers or trainer.log_dir is None:
            # No run folder (no logger, or one that keeps no files, MLflow's with a database): Lightning
            # would write config.yaml into the working directory, or fail. A fit's settings are in each of
            # its checkpoints (ExactResume) all the same.
            self.already_saved = True
        if not self.already_saved:
            log_dir, name, n = Path(trainer.log_dir), "config.yaml", 0
            if trainer.is_global_zero:
                log_dir.mkdir(parents=True, exist_ok=True)
                while True:
                    try:
                        (log_dir / name).open("x").close()
                        break
                    except FileExistsError:
                        n += 1
                        name = f"config-{n}.yaml"
            self.config_filename = trainer.strategy.broadcast(name)
            # The name is this run's own empty file now; Lightning's check would refuse it.
            self.overwrite = True
        super().setup(trainer, pl_module, stage)
