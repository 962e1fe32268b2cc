"""The command line: `python -m bert_imdb {fit,validate,test,predict,export}`, a LightningCLI."""

import contextlib
import inspect
import json
import signal
import sys
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from jsonargparse import ArgumentError, auto_cli
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import Precision
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from torch.multiprocessing import ProcessRaisedException

from bert_imdb.callbacks.early_stopping import EarlyStop
from bert_imdb.callbacks.predictions import PredictionWriter
from bert_imdb.callbacks.save_config import SaveConfigBesideExisting
from bert_imdb.callbacks.throughput import TokenThroughputMonitor
from bert_imdb.callbacks.validation_record import ValidationRecord
from bert_imdb.config_files import check_config_files
from bert_imdb.data.review_files import scan_reviews
from bert_imdb.data.sentiment import IMDbDataModule
from bert_imdb.deployment.onnx_export import INT8_FILE, ONNX_FILE
from bert_imdb.deployment.onnx_runtime import OnnxLogits, check_onnx_predict
from bert_imdb.errors import UserError
from bert_imdb.exits import exit_if_stopped_by_signal, keep_write_errors_of_threads, one_line_of
from bert_imdb.export import export
from bert_imdb.models.classifier import CALIBRATION_FIELD, SentimentClassifier
from bert_imdb.precision import checked_precision
from bert_imdb.quiet import quiet_library_noise
from bert_imdb.resume.atomic_io import AtomicCheckpointIO
from bert_imdb.resume.exact_resume import ExactResume
from bert_imdb.resume.finding import (
    continue_last_run,
    continue_requeued_job,
    find_best_checkpoint,
    log_into_checkpoint_run,
)
from bert_imdb.resume.last_checkpoint import LastCheckpoint
from bert_imdb.resume.loading import load_checkpoint
from bert_imdb.resume.rules import (
    IN_CONFIG,
    NOT_RECORDED,
    check_resumable,
    check_same_model_class,
)
from bert_imdb.resume.settings_record import (
    check_allowed_names,
    check_loader_workers,
    check_settings,
    recorded_settings,
    unchecked_settings,
)
from bert_imdb.resume.slurm_requeue import SlurmRequeue
from bert_imdb.resume.stop_on_signal import StopOnSignal
from bert_imdb.run_folders import claim_run_folder, release_unused_run_folder
from bert_imdb.settings_errors import one_line, setting_names
from bert_imdb.settings_ranges import check_fit_trains, check_numeric_settings
from bert_imdb.tasks import check_pairing, import_class
from bert_imdb.workarounds.fit_loop import ExactResumeFitLoop
from bert_imdb.workarounds.whole_window_stop import WholeWindowEpochLoop

DESCRIPTION = (
    "Fine-tune BERT on IMDb reviews (the default: SentimentClassifier on IMDbDataModule), or pre-train it "
    "further (model.class_path bert_imdb.MaskedLanguageModel, data.class_path "
    "bert_imdb.IMDbPretrainingDataModule: see configs/mlm.yaml). Subcommands: fit, validate, test, predict "
    "(Lightning's), and export (a checkpoint to a Hugging Face model folder: bert-imdb export --help)."
)


# Each validation's candidate for the best checkpoint is weighed right after it, where its metric comes
# from; left to Lightning, it is weighed at the epoch's end when val_check_interval equals 1 (the int too:
# every batch), and a last.ckpt saved after a validation then resumes without its candidate. The generated
# resume scenarios build their best checkpoint with this.
BEST_CHECKPOINT = {"checkpoint.save_on_train_epoch_end": False}


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
                **BEST_CHECKPOINT,
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
        # Off unless early_stopping.patience is set; watches checkpoint.monitor unless told otherwise.
        parser.add_lightning_class_args(EarlyStop, "early_stopping")
        parser.add_lightning_class_args(ExactResume, "exact_resume")
        parser.add_lightning_class_args(SlurmRequeue, "slurm_requeue")
        parser.add_lightning_class_args(StopOnSignal, "stop_on_signal")
        parser.add_lightning_class_args(ValidationRecord, "validation_record")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(TokenThroughputMonitor, "throughput")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="fit only: test the best checkpoint in the same process once the fit ends (no second "
            "start-up and tokenization), logged into the same run",
        )
        parser.add_argument(
            "--runtime",
            type=Literal["torch", "onnxruntime"],
            default="torch",
            help="predict only: onnxruntime runs the ONNX model of an export (--model.model_name_or_path "
            "<export folder>, written with export --format onnx) instead of PyTorch (docs/export.md)",
        )
        parser.add_argument(
            "--onnx_file",
            type=str,
            default=ONNX_FILE,
            help=f"predict with --runtime onnxruntime: the ONNX file in the export folder ({INT8_FILE} for int8)",
        )
        parser.add_argument(
            "--resume_allow",
            type=list[str],
            default=[],
            help="Resuming a fit (--ckpt_path): settings allowed to differ from the checkpoint's on purpose, "
            "e.g. [model.learning_rate]; every other change of what is trained is refused (docs/resume.md)",
        )

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise UserError(_settings_error(parser, args, err)) from None
        # Before LightningCLI reads the checkpoint's hyperparameters, which fails with a traceback.
        subcommand = self.config.get("subcommand")
        # Before LightningCLI seeds (a seed out of range is a ValueError traceback there).
        check_numeric_settings(self.config[subcommand] if subcommand else self.config)
        if subcommand == "fit":
            check_fit_trains(self.config[subcommand].trainer)
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        # What this fit trains with, as the user set it: recorded in every checkpoint, and what a resume is
        # checked against. Read before LightningCLI replaces the model's arguments by a checkpoint's.
        self.settings = recorded_settings(self.config[subcommand]) if subcommand == "fit" else None
        self.resume_allow = tuple(self.config[subcommand].get("resume_allow") or ()) if subcommand else ()
        if self.settings is not None:
            check_allowed_names(self.resume_allow, self.settings)
        if subcommand == "fit" and ckpt_path in (None, "hpc") and SLURMEnvironment.detect():
            # A requeued job: its checkpoint, from its run folder, checked like any other.
            ckpt_path = self.config.fit.ckpt_path = continue_requeued_job(self.config.fit) or ckpt_path
        if _is_file_path(ckpt_path) and subcommand == "fit":
            self._check_same_setup(ckpt_path, self.config[subcommand])
        elif _is_file_path(ckpt_path):
            load_checkpoint(ckpt_path, mmap=True)

    def _check_same_setup(self, ckpt_path: str | Path, config) -> None:
        """Stop a resume whose settings differ from those the checkpoint recorded (deny by default:
        resume/settings_record.py), before anything is built. A checkpoint from before settings were
        recorded is checked on the settings resume/rules.py names, and the run says so."""
        checkpoint = load_checkpoint(str(ckpt_path), mmap=True)
        check_same_model_class(ckpt_path, checkpoint, config.model.class_path)
        saved = checkpoint.get("callbacks", {}).get(ExactResume.__qualname__, {}).get("settings")
        if saved is not None:
            check_settings(ckpt_path, saved, self.settings, self.resume_allow)
            check_loader_workers(ckpt_path, checkpoint, saved, self.settings)
            unchecked = unchecked_settings(saved, self.settings)
            if unchecked:
                rank_zero_warn(
                    f"checkpoint {ckpt_path} records no value of {', '.join(unchecked)} (another version of "
                    "bert_imdb): those settings were not checked"
                )
            return
        from_config = {}
        for name in IN_CONFIG:
            section, _, key = name.partition(".")
            from_config[name] = config[section].init_args.get(key, NOT_RECORDED)
        check_resumable(ckpt_path, checkpoint, from_config)
        rank_zero_warn(
            f"checkpoint {ckpt_path} was written before bert_imdb recorded every setting: only "
            f"{', '.join(IN_CONFIG)}, the processes, batch size and accumulation were checked"
        )

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if self.onnx_file is not None:
            self.model.runtime = OnnxLogits(self.onnx_file, threads=torch.get_num_threads())
        if getattr(self, "trainer", None) is None or self.settings is None:
            return
        for callback in self.trainer.callbacks:
            if isinstance(callback, ExactResume):
                callback.settings, callback.allowed = self.settings, self.resume_allow
            if isinstance(callback, SlurmRequeue):
                callback.found_by_lightning = self.config.fit.get("ckpt_path") is None

    def after_fit(self) -> None:
        """`--test_after_fit`: test the best checkpoint (or, with checkpointing or validation off, the
        weights the fit ended with) in this process, unless a signal stopped the fit."""
        if not self.config.fit.get("test_after_fit"):
            return
        if any(isinstance(c, StopOnSignal) and c.stopped is not None for c in self.trainer.callbacks):
            return
        checkpoints = self.trainer.checkpoint_callback
        best = checkpoints.best_model_path if checkpoints else ""
        if not best:
            why = "checkpointing is off" if checkpoints is None else "no validation ran to pick one"
            rank_zero_warn(f"--test_after_fit: no best checkpoint ({why}): testing the last weights")
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if not trainer.loggers:
            # `--trainer.logger false`: the learning rate has nowhere to go (Lightning's monitor refuses to
            # run without a logger), and everything else still works.
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        ExactResumeFitLoop.install(trainer)
        WholeWindowEpochLoop.install(trainer)
        if checked_precision(trainer.precision, trainer.strategy.root_device) != trainer.precision:
            # The one fallback is bf16-mixed to 32-true on the CPU. The device is known only once the
            # Trainer is built, and a second Trainer would register the callbacks twice: swap the plugin.
            trainer.strategy.precision_plugin = Precision()
        return trainer

    def before_instantiate_classes(self) -> None:
        # Without a subcommand (run=False), the classes are only built: there is nothing to run or resume.
        config = self.config[self.subcommand] if self.subcommand else self.config
        model_class, data_class = import_class(config.model.class_path), import_class(config.data.class_path)
        _refuse_missing_step(model_class, self.subcommand, config.get("ckpt_path"))
        check_pairing(model_class, data_class)
        _resolve_checkpoint_metric(config.checkpoint, model_class)
        _honour_no_checkpointing(config)
        if config.early_stopping.monitor == "auto":
            config.early_stopping.monitor = config.checkpoint.monitor
            config.early_stopping.mode = (
                config.checkpoint.mode if config.early_stopping.mode == "auto" else config.early_stopping.mode
            )
        if self.subcommand == "predict":
            _prepare_predict(config)
        if self.subcommand not in (None, "fit") and config.test_after_fit:
            raise UserError(f"--test_after_fit is for fit: {self.subcommand} tests nothing after itself")
        self.onnx_file = None
        if self.subcommand and config.runtime != "torch":
            self.onnx_file = check_onnx_predict(self.subcommand, config)
        elif (
            self.subcommand in ("validate", "test", "predict")
            and config.ckpt_path is None
            and not _is_classifier_export(config.model.init_args.get("model_name_or_path"))
        ):
            rank_zero_warn(
                f"{self.subcommand} without --ckpt_path scores the weights model.model_name_or_path starts "
                "from, untrained for this task (a random classification head): pass --ckpt_path best, or a "
                "checkpoint; its records are named *_untrained"
            )
        if self.subcommand in ("validate", "test", "predict") and config.ckpt_path in ("best", "hpc"):
            find_best_checkpoint(config, self.subcommand)
        if self.subcommand == "fit" and _is_file_path(config.ckpt_path):
            # LightningCLI gave the model the checkpoint's arguments: those allowed to change get the new.
            for name in self.resume_allow:
                key = name.removeprefix("model.")
                if name.startswith("model.") and key in config.model.get("init_args", {}):
                    config.model.init_args[key] = self.settings[name]
        if self.subcommand == "fit" and config.ckpt_path == "last" and config.last_checkpoint.dirpath is None:
            last = continue_last_run(config)
            if last is not None:
                self._check_same_setup(last, config)
        elif self.subcommand and _is_file_path(config.ckpt_path):
            log_into_checkpoint_run(config.trainer.logger, Path(config.ckpt_path))
        if self.subcommand:
            claim_run_folder(config.trainer.logger)


def _settings_error(parser, args: ArgsType, err: ArgumentError) -> str:
    """The one line for a bad setting, with the nearest valid name from the settings of its subcommand."""
    argv = sys.argv[1:] if args is None else args
    subcommand = (
        next((arg for arg in argv if arg in LightningCLI.subcommands()), None)
        if isinstance(argv, list)
        else None
    )
    known = []
    if subcommand is not None:
        with contextlib.suppress(ArgumentError):  # no nearest name, then
            known = setting_names(parser.parse_args([subcommand]), prefix=f"{subcommand}.")
    return one_line(str(err), f"bert-imdb {subcommand}" if subcommand else "bert-imdb", known)


def _refuse_missing_step(model_class: type, subcommand: str | None, ckpt_path: str | None) -> None:
    """Stop `validate`, `test` or `predict` of a module that has no such step (MLM has no test or predict)."""
    step = {"validate": "validation_step", "test": "test_step", "predict": "predict_step"}.get(subcommand)
    if step and getattr(model_class, step, None) is getattr(L.LightningModule, step, None):
        if _is_file_path(ckpt_path):
            raise UserError(
                f"checkpoint {ckpt_path} holds a {model_class.__name__}, which has no {subcommand} step: "
                f"export it (bert-imdb export --ckpt_path {ckpt_path} --output_dir DIR), fine-tune a "
                f"SentimentClassifier from DIR (--model.model_name_or_path DIR) and {subcommand} that"
            )
        raise UserError(
            f"{model_class.__name__} has no {subcommand} step: fit or validate it, export it, "
            f"and {subcommand} a SentimentClassifier started from the export"
        )


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


def _honour_no_checkpointing(config) -> None:
    """`--trainer.enable_checkpointing false`: the CLI's two checkpoint callbacks save nothing. Lightning
    refuses the flag beside any ModelCheckpoint, and this CLI always has two."""
    trainer = config.get("trainer")
    if trainer is not None and trainer.get("enable_checkpointing") is False:
        trainer.enable_checkpointing = None
        config.checkpoint.save_top_k = 0
        config.last_checkpoint.save_top_k = 0


def _is_classifier_export(model_name_or_path: str | None) -> bool:
    """Whether the model folder is a classifier bert_imdb exported (its trained head and the fitted
    temperature, recorded in config.json), so that scoring it needs no checkpoint."""
    config = Path(str(model_name_or_path)) / "config.json"
    try:
        return CALIBRATION_FIELD in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _prepare_predict(config) -> None:
    """Check the predict file before the Trainer starts other processes (one error line, not one per
    process), and keep no predictions in memory: PredictionWriter writes every batch out, and the Trainer
    keeping them all too would hold a whole file's predictions."""
    predict_file = config.data.init_args.get("predict_file")
    if predict_file is not None:
        scan_reviews(predict_file)
    if config.return_predictions is None:
        config.return_predictions = False


def _is_file_path(ckpt_path: str | None) -> bool:
    return (
        bool(ckpt_path) and ckpt_path not in ("last", "best", "hpc") and not ckpt_path.startswith("registry")
    )


def cli_main(args: ArgsType = None, run: bool = True) -> BertImdbCLI | None:
    """Run the CLI; bad input ends with a one-line message (exit status 1) instead of a traceback.

    `export` is no Trainer method, so it gets its own small parser beside LightningCLI's subcommands.
    With `run` false, `args` has no subcommand and the CLI only builds the model, data module and trainer.
    """
    argv = sys.argv[1:] if args is None else args
    quiet_library_noise()
    failed_writes = keep_write_errors_of_threads()
    try:
        check_config_files(argv)
        if argv[:1] == ["export"]:
            try:
                auto_cli(export, args=argv[1:], prog="bert-imdb export", exit_on_error=False)
            except ArgumentError as err:
                known = inspect.signature(export).parameters
                raise UserError(one_line(str(err), "bert-imdb export", known)) from None
            return None
        cli = BertImdbCLI(
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
            # Errors come back as exceptions, which cli_main says in one line (settings_errors.py), instead
            # of jsonargparse's usage text of several hundred lines.
            parser_kwargs={"prog": "bert-imdb", "description": DESCRIPTION, "exit_on_error": False},
            auto_configure_optimizers=False,  # each module's configure_optimizers owns them
            args=args,
            run=run,
        )
        exit_if_stopped_by_signal(cli)
        if failed_writes:
            raise failed_writes[0]
        return cli
    except SIGTERMException:
        # Lightning leaves validate, test and predict on SIGTERM with a SystemExit of status 0.
        print("error: stopped by SIGTERM before the end", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except (UserError, ValueError, MisconfigurationException, OSError, ProcessRaisedException) as err:
        message = one_line_of(err)
        if message is None:
            raise
        raise SystemExit(f"error: {message}") from None
    finally:
        # A command that wrote nothing into the run folder it claimed (it failed first) leaves no folder.
        release_unused_run_folder()


def main() -> None:
    """The `bert-imdb` console script and `python -m bert_imdb`: cli_main, whose result is no exit status."""
    cli_main()
