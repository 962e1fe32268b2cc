"""Other loggers than TensorBoard, in its place or beside it: fit + test with each, read back from what the
logger stored."""

import csv

import pytest
from conftest import tiny_args

from bert_imdb.cli import cli_main

CSV = "lightning.pytorch.loggers.CSVLogger"
MLFLOW = "lightning.pytorch.loggers.MLFlowLogger"


def fit_and_test(tiny_model, hub_dataset, *logger_args):
    args = tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1", "--trainer.limit_train_batches=4")
    args = [arg for arg in args if not arg.startswith("--trainer.logger.")]
    fit = cli_main(["fit", *args, *logger_args])
    best = fit.trainer.checkpoint_callback.best_model_path
    cli_main(["test", *args, *logger_args, f"--ckpt_path={best}"])
    return fit


def test_csv_logger_holds_the_scalars_and_the_run_says_what_it_leaves_out(tiny_model, hub_dataset, workdir):
    with pytest.warns(UserWarning, match="CSVLogger holds scalars only, not the confusion matrix"):
        fit_and_test(tiny_model, hub_dataset, f"--trainer.logger={CSV}", "--trainer.logger.save_dir=logs")
    written = {}
    for path in sorted(workdir.glob("logs/*/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            written.update({key: value for key, value in row.items() if value})
    for name in ("train/loss", "val/acc", "val/ece_calibrated", "test/acc", "test/f1_ci_low", "hp/test_acc"):
        assert name in written, sorted(written)
    # Test's accuracy by length, written at the step of the weights it scores.
    assert any(name.startswith("test_by_length/acc_tokens_") for name in written)


def test_mlflow_logger_holds_scalars_parameters_figures_and_tables(tiny_model, hub_dataset, workdir):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    logger = [f"--trainer.logger={MLFLOW}", f"--trainer.logger.tracking_uri={uri}"]
    fit_and_test(tiny_model, hub_dataset, *logger, "--trainer.logger.experiment_name=tiny")
    client = mlflow.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    fit_run, test_run = sorted(
        client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time
    )
    assert {"val/acc", "train/loss", "hp/val_acc"} <= fit_run.data.metrics.keys()
    assert {"test/acc", "test/ece", "hp/test_acc"} <= test_run.data.metrics.keys()
    assert fit_run.data.params["learning_rate"] == "0.002"
    for run, split in ((fit_run, "val"), (test_run, "test")):
        kept = {entry.path for entry in client.list_artifacts(run.info.run_id, split)}
        assert {
            f"{split}/{name}" for name in ("confusion_matrix", "reliability", "confidently_wrong")
        } <= kept
    # No config.yaml in the working directory: MLflow's logger has no run folder.
    assert not (workdir / "config.yaml").exists()
