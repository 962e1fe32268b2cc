"""Checkpoints and run configs written before the package moved into subpackages (built once by
tests/fixtures/legacy/make.py at commit dc65716 and committed) still test, predict, export and resume."""

import csv
import importlib
import shutil
from pathlib import Path

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from bert_imdb._legacy import OLD_PATHS
from bert_imdb.cli import cli_main

LEGACY = REPO / "tests" / "fixtures" / "legacy"
# What each legacy fit ran: one epoch of 32 training reviews in batches of 8 (classifier), and of the
# masked-LM blocks of the same reviews.
CLASSIFIER_STEPS = 4
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture
def legacy(tmp_path, monkeypatch) -> Path:
    """A copy of the fixture folder as the working directory: the checkpoints name ./tiny-bert and ./imdb."""
    folder = tmp_path / "legacy"
    shutil.copytree(LEGACY, folder, ignore=shutil.ignore_patterns("make.py"))
    monkeypatch.chdir(folder)
    return folder


def _exported_equal_to_checkpoint(out: Path, ckpt: Path) -> None:
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    exported = load_file(out / "model.safetensors")
    assert exported, "the export wrote no weights"
    for name, tensor in exported.items():
        assert torch.equal(tensor, saved[f"model.{name}"]), name


def test_a_classifier_checkpoint_from_before_the_move_tests_predicts_exports_and_resumes(legacy):
    config = ["--config=classifier-config.yaml", *QUIET]
    test = cli_main(["test", *config, "--ckpt_path=classifier.ckpt"])
    assert {"test/acc", "test/f1", "test/loss"} <= test.trainer.callback_metrics.keys()

    (legacy / "reviews.txt").write_text("a wonderful film\nan awful boring plot\n", encoding="utf-8")
    predict = cli_main(
        [
            "predict",
            *config,
            "--ckpt_path=classifier.ckpt",
            "--data.predict_file=reviews.txt",
            "--predictions.output_file=predictions.csv",
        ]
    )
    assert predict is not None
    rows = list(csv.DictReader((legacy / "predictions.csv").open()))
    assert [row["id"] for row in rows] == ["1", "2"] and {row["label"] for row in rows} <= {"neg", "pos"}

    assert cli_main(["export", "--ckpt_path=classifier.ckpt", "--output_dir=exported"]) is None
    _exported_equal_to_checkpoint(legacy / "exported", legacy / "classifier.ckpt")

    # The run's own config.yaml names the classes by the paths of that version.
    fit = cli_main(["fit", *config, "--ckpt_path=classifier.ckpt", "--trainer.max_epochs=2"])
    assert fit.trainer.current_epoch == 2 and fit.trainer.global_step == 2 * CLASSIFIER_STEPS


def test_a_masked_lm_checkpoint_from_before_the_move_validates_exports_and_resumes(legacy):
    mlm = [
        "--model=bert_imdb.MaskedLanguageModel",
        "--data=bert_imdb.IMDbPretrainingDataModule",
        "--model.model_name_or_path=./tiny-bert",
        "--data.dataset=./imdb",
        "--data.max_length=16",
        "--data.batch_size=8",
        "--data.val_reviews=8",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.logger.init_args.name=mlm",
        *QUIET,
    ]
    steps = torch.load(legacy / "mlm.ckpt", weights_only=True)["global_step"]
    validate = cli_main(["validate", *mlm, "--ckpt_path=mlm.ckpt"])
    assert {"val/loss", "val/perplexity"} <= validate.trainer.callback_metrics.keys()

    assert cli_main(["export", "--ckpt_path=mlm.ckpt", "--output_dir=exported"]) is None
    _exported_equal_to_checkpoint(legacy / "exported", legacy / "mlm.ckpt")

    fit = cli_main(["fit", *mlm, "--ckpt_path=mlm.ckpt", "--trainer.max_epochs=2"])
    assert fit.trainer.current_epoch == 2 and fit.trainer.global_step == 2 * steps


@pytest.mark.parametrize(
    "old_path",
    [f"{module}.{name}" for module, names in OLD_PATHS.items() for name in names]
    + ["bert_imdb.data.IMDbDataModule"],
)
def test_the_old_class_paths_build_todays_classes(old_path):
    module, _, name = old_path.rpartition(".")
    # As jsonargparse resolves a class_path from a config or checkpoint.
    found = getattr(importlib.import_module(module), name)
    assert found.__module__.count(".") == 2, f"{old_path} resolves to {found.__module__}, not a subpackage"
