"""The command line: `python -m bert_imdb {fit,validate,test,predict}`, a LightningCLI."""

import sys
from pathlib import Path

from jsonargparse import auto_cli
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from bert_imdb.classifier import SentimentClassifier
from bert_imdb.data import IMDbDataModule
from bert_imdb.errors import UserError
from bert_imdb.export import check_checkpoint_file, export
from bert_imdb.predictions import PredictionWriter
from bert_imdb.throughput import TokenThroughputMonitor

DESCRIPTION = (
    "Fine-tune BERT on IMDb reviews. Subcommands: fit, validate, test, predict (Lightning's), and export "
    "(a checkpoint to a Hugging Face model folder: python -m bert_imdb export --help)."
)


class SaveConfigBesideExisting(SaveConfigCallback):
    """Saves the run's config as config.yaml, or config-1.yaml, ... where a resumed run already has one.

    Lightning's callback either fails on an existing file or overwrites it; a resumed run must do neither.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.already_saved:
            log_dir, name, n = Path(trainer.log_dir), "config.yaml", 0
            while (log_dir / name).exists():
                n += 1
                name = f"config-{n}.yaml"
            self.config_filename = name
        super().setup(trainer, pl_module, stage)


class BertImdbCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model.model_name_or_path", "data.tokenizer_name_or_path")
        parser.link_arguments("seed_everything", "data.seed", compute_fn=int)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                # Metric names hold a slash, so Lightning must not insert them into the file name itself.
                "checkpoint.filename": "epoch{epoch}-step{step}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(TokenThroughputMonitor, "throughput")
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # Before LightningCLI reads the checkpoint's hyperparameters, which fails with a traceback.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc") and not ckpt_path.startswith("registry"):
            check_checkpoint_file(ckpt_path)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if self.subcommand == "fit" and config.ckpt_path == "last" and config.checkpoint.dirpath is None:
            self._continue_last_run(config.trainer.logger)

    @staticmethod
    def _continue_last_run(logger) -> None:
        """Point the TensorBoard logger at the newest run with a last.ckpt, so `--ckpt_path last` finds it there
        and the resumed run keeps logging into the same folder instead of starting a new version."""
        if not (isinstance(logger, dict) or hasattr(logger, "class_path")):
            return
        if not logger.class_path.endswith("TensorBoardLogger") or logger.init_args.get("version") is not None:
            return
        runs = Path(logger.init_args.save_dir) / logger.init_args.name
        last = sorted(runs.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if last:
            logger.init_args.version = last[-1].parent.parent.name


def cli_main(args: ArgsType = None) -> BertImdbCLI | None:
    """Run the CLI; bad input ends with a one-line message (exit status 1) instead of a traceback.

    `export` is no Trainer method, so it gets its own small parser beside LightningCLI's subcommands.
    """
    argv = sys.argv[1:] if args is None else args
    try:
        if argv[:1] == ["export"]:
            auto_cli(export, args=argv[1:])
            return None
        return BertImdbCLI(
            SentimentClassifier,
            IMDbDataModule,
            seed_everything_default=42,
            save_config_callback=SaveConfigBesideExisting,
            trainer_defaults={
                "logger": {
                    "class_path": f"{TensorBoardLogger.__module__}.TensorBoardLogger",
                    "init_args": {
                        "save_dir": "lightning_logs",
                        "name": "bert_imdb",
                        "default_hp_metric": False,
                    },
                }
            },
            parser_kwargs={"description": DESCRIPTION},
            auto_configure_optimizers=False,  # SentimentClassifier.configure_optimizers owns them
            args=args,
        )
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
