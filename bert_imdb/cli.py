"""The command line: `python -m bert_imdb {fit,validate,test,predict,export}`, a LightningCLI."""

import importlib
import sys
from pathlib import Path

import lightning as L
from jsonargparse import auto_cli
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import Precision

from bert_imdb.checkpointing import AtomicCheckpointIO, EpochEndResumeFitLoop, ExactResume, LastCheckpoint
from bert_imdb.classifier import SentimentClassifier
from bert_imdb.data import IMDbDataModule
from bert_imdb.errors import UserError
from bert_imdb.export import export, load_checkpoint
from bert_imdb.model_card import ValidationRecord
from bert_imdb.precision import checked_precision
from bert_imdb.predictions import PredictionWriter
from bert_imdb.pretraining import MaskedLanguageModel
from bert_imdb.pretraining_data import IMDbPretrainingDataModule
from bert_imdb.review_files import scan_reviews
from bert_imdb.slurm import SlurmRequeue
from bert_imdb.throughput import TokenThroughputMonitor

DESCRIPTION = (
    "Fine-tune BERT on IMDb reviews (the default: SentimentClassifier on IMDbDataModule), or pre-train it "
    "further (model.class_path bert_imdb.MaskedLanguageModel, data.class_path "
    "bert_imdb.IMDbPretrainingDataModule: see configs/mlm.yaml). Subcommands: fit, validate, test, predict "
    "(Lightning's), and export (a checkpoint to a Hugging Face model folder: python -m bert_imdb export --help)."
)
# Each module trains on its own data module.
DATA_OF_MODEL = {SentimentClassifier: IMDbDataModule, MaskedLanguageModel: IMDbPretrainingDataModule}


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class SaveConfigBesideExisting(SaveConfigCallback):
    """Saves the run's config as config.yaml, or config-1.yaml, ... where the run folder already has one.

    Lightning's callback either fails on an existing file or overwrites it; a resumed run must do neither.
    Rank 0 claims the name by creating the file exclusively, so two commands evaluating the same run at
    once (two `predict`s of one checkpoint, say) take different names instead of failing on the same one.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
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


class BertImdbCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # jsonargparse keeps same-named init_args when the class changes (to MLM, say), so the pre-training
        # classes share the classifier's defaults; tests/test_cli.py holds them equal.
        parser.set_defaults(
            {
                "model": {"class_path": f"{SentimentClassifier.__module__}.SentimentClassifier"},
                "data": {"class_path": f"{IMDbDataModule.__module__}.IMDbDataModule"},
            }
        )
        # Links whose target the chosen class lacks (nsp, for the classifier) are skipped by jsonargparse.
        parser.link_arguments("model.init_args.model_name_or_path", "data.init_args.tokenizer_name_or_path")
        parser.link_arguments("model.init_args.nsp", "data.init_args.nsp")
        parser.link_arguments("seed_everything", "data.init_args.seed", compute_fn=int)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                # "auto": the model's own `checkpoint_metric` (val/acc, max for the classifier; val/loss, min
                # for MLM), and a file name that carries its value.
                "checkpoint.monitor": "auto",
                "checkpoint.mode": "auto",
                # Metric names hold a slash, so Lightning must not insert them into the file name itself.
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        # last.ckpt, what `--ckpt_path last` and preempted jobs resume from, comes from a second
        # ModelCheckpoint that saves the newest state every epoch (and every N steps if asked):
        # `save_last` on the first one only writes it when the monitored metric improved.
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(ExactResume, "exact_resume")
        parser.add_lightning_class_args(SlurmRequeue, "slurm_requeue")
        parser.add_lightning_class_args(ValidationRecord, "validation_record")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(TokenThroughputMonitor, "throughput")
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # Before LightningCLI reads the checkpoint's hyperparameters, which fails with a traceback.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if _is_file_path(ckpt_path) and subcommand == "fit":
            # Also before LightningCLI replaces the model's arguments by the checkpoint's.
            _check_same_setup(ckpt_path, self.config[subcommand])
        elif _is_file_path(ckpt_path):
            load_checkpoint(ckpt_path, mmap=True)

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        EpochEndResumeFitLoop.install(trainer)
        if checked_precision(trainer.precision, trainer.strategy.root_device) != trainer.precision:
            # The one fallback is bf16-mixed to 32-true on the CPU. The device is known only once the
            # Trainer is built, and a second Trainer would register the callbacks twice: swap the plugin.
            trainer.strategy.precision_plugin = Precision()
        return trainer

    def before_instantiate_classes(self) -> None:
        # Without a subcommand (run=False), the classes are only built: there is nothing to run or resume.
        config = self.config[self.subcommand] if self.subcommand else self.config
        model_class, data_class = _import(config.model.class_path), _import(config.data.class_path)
        expected = DATA_OF_MODEL.get(model_class)
        if expected is not None and data_class in DATA_OF_MODEL.values() and data_class is not expected:
            raise UserError(
                f"{model_class.__name__} trains on {expected.__name__}, not {data_class.__name__}: "
                f"set data.class_path to bert_imdb.{expected.__name__}"
            )
        step = {"validate": "validation_step", "test": "test_step", "predict": "predict_step"}.get(
            self.subcommand
        )
        if step and getattr(model_class, step, None) is getattr(L.LightningModule, step, None):
            raise UserError(
                f"{model_class.__name__} has no {self.subcommand} step: fit or validate it, export it, "
                f"and {self.subcommand} a SentimentClassifier started from the export"
            )
        self._resolve_checkpoint_metric(config.checkpoint, model_class)
        if self.subcommand is None:
            return
        predict_file = config.data.init_args.get("predict_file")
        if self.subcommand == "predict" and predict_file is not None:
            # Here, before the Trainer starts the other processes: one error line, not one per process.
            scan_reviews(predict_file)
        if self.subcommand == "predict" and config.return_predictions is None:
            # PredictionWriter writes every batch out; the Trainer keeping them all too would hold a whole
            # file's predictions in memory.
            config.return_predictions = False
        if self.subcommand == "fit" and config.ckpt_path == "last" and config.last_checkpoint.dirpath is None:
            resumed = self._continue_last_run(config.trainer.logger)
            if resumed is not None:
                _check_same_setup(resumed, config)
        elif _is_file_path(config.ckpt_path):
            self._log_into_checkpoint_run(config.trainer.logger, Path(config.ckpt_path))

    @staticmethod
    def _resolve_checkpoint_metric(checkpoint, model_class: type) -> None:
        """Fill checkpoint.monitor/mode "auto" from the model, and name the files after the monitored value."""
        metric, mode = getattr(model_class, "checkpoint_metric", (None, "min"))
        if checkpoint.monitor == "auto":
            checkpoint.monitor = metric
            checkpoint.mode = mode if checkpoint.mode == "auto" else checkpoint.mode
        checkpoint.mode = "min" if checkpoint.mode == "auto" else checkpoint.mode
        if checkpoint.filename is None and checkpoint.monitor:
            value = checkpoint.monitor
            checkpoint.filename = f"epoch{{epoch}}-step{{step}}-{value.replace('/', '_')}{{{value}:.4f}}"

    @staticmethod
    def _continue_last_run(logger) -> Path | None:
        """Point the TensorBoard logger at the newest run with a last.ckpt, so `--ckpt_path last` finds it there
        and the resumed run keeps logging into the same folder instead of starting a new version."""
        if not (isinstance(logger, dict) or hasattr(logger, "class_path")):
            return None
        if not logger.class_path.endswith("TensorBoardLogger") or logger.init_args.get("version") is not None:
            return None
        runs = Path(logger.init_args.save_dir) / logger.init_args.name
        last = sorted(runs.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not last:
            return None
        logger.init_args.version = last[-1].parent.parent.name
        return last[-1]

    @staticmethod
    def _log_into_checkpoint_run(logger, ckpt_path: Path) -> None:
        """A checkpoint from a run folder (<save_dir>/<name>/<version>/checkpoints/) is evaluated, predicted
        or resumed in that run: TensorBoard then shows test/* beside the fit's train/* and val/*, and one
        HPARAMS row with both accuracies. Not when the logger's version is set, or is not TensorBoard."""
        if not (isinstance(logger, dict) or hasattr(logger, "class_path")):
            return
        if not logger.class_path.endswith("TensorBoardLogger") or logger.init_args.get("version") is not None:
            return
        run = ckpt_path.expanduser().resolve().parent.parent
        if ckpt_path.parent.name != "checkpoints" or not (run / "hparams.yaml").is_file():
            return
        logger.init_args.save_dir, logger.init_args.name = str(run.parent.parent), run.parent.name
        logger.init_args.version = run.name


def _is_file_path(ckpt_path: str | None) -> bool:
    return (
        bool(ckpt_path) and ckpt_path not in ("last", "best", "hpc") and not ckpt_path.startswith("registry")
    )


# What must not change between a checkpoint and the config that resumes it: (section, key).
RESUME_MUST_MATCH = [("model", "model_name_or_path"), ("model", "nsp"), ("data", "max_length")]


def _check_same_setup(ckpt_path: str | Path, config) -> None:
    """Stop a resume whose config trains another model, or another sequence length, than the checkpoint's:
    Lightning would load the weights into whatever the config builds, or train on inputs cut differently."""
    checkpoint = load_checkpoint(str(ckpt_path), mmap=True)
    saved = {
        "model": checkpoint["hyper_parameters"],
        "data": checkpoint.get("datamodule_hyper_parameters", {}),
    }
    built = config.model.class_path.rpartition(".")[2]
    saved_class = saved["model"].get("_class_path", built).rpartition(".")[2]
    if saved_class != built:
        raise UserError(
            f"checkpoint {ckpt_path} holds a {saved_class}, the config builds a {built}: "
            "resume with the run's own config.yaml"
        )
    for section, key in RESUME_MUST_MATCH:
        then, now = saved[section].get(key), config[section].init_args.get(key)
        if then is not None and now is not None and then != now:
            raise UserError(
                f"checkpoint {ckpt_path} was trained with {section}.{key}={then}, the config says {now}: "
                "resume with the run's own config.yaml, or start a new fit without --ckpt_path"
            )


def cli_main(args: ArgsType = None, run: bool = True) -> BertImdbCLI | None:
    """Run the CLI; bad input ends with a one-line message (exit status 1) instead of a traceback.

    `export` is no Trainer method, so it gets its own small parser beside LightningCLI's subcommands.
    With `run` false, `args` has no subcommand and the CLI only builds the model, data module and trainer.
    """
    argv = sys.argv[1:] if args is None else args
    try:
        if argv[:1] == ["export"]:
            auto_cli(export, args=argv[1:])
            return None
        return BertImdbCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=42,
            save_config_callback=SaveConfigBesideExisting,
            trainer_defaults={
                "plugins": [{"class_path": f"{AtomicCheckpointIO.__module__}.AtomicCheckpointIO"}],
                "logger": {
                    "class_path": f"{TensorBoardLogger.__module__}.TensorBoardLogger",
                    "init_args": {
                        "save_dir": "lightning_logs",
                        "name": "bert_imdb",
                        "default_hp_metric": False,
                    },
                },
            },
            parser_kwargs={"description": DESCRIPTION},
            auto_configure_optimizers=False,  # each module's configure_optimizers owns them
            args=args,
            run=run,
        )
    except (UserError, ValueError) as err:
        cause = _user_error_in(err)
        if cause is None:
            raise
        raise SystemExit(f"error: {cause}") from None


def _user_error_in(err: BaseException | None) -> UserError | None:
    """The UserError behind `err`: jsonargparse re-raises errors of the models and data modules it builds
    as a ValueError listing every type it tried, which would bury the one line that matters."""
    while err is not None and not isinstance(err, UserError):
        err = err.__cause__ or err.__context__
    return err
