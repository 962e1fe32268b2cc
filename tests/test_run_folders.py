import functools
from pathlib import Path

import lightning as L
import pytest
from conftest import tiny_args
from jsonargparse import Namespace
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from bert_imdb.cli import cli_main
from bert_imdb.run_folders import claim_run_folder, release_unused_run_folder


def _logger(save_dir: Path) -> Namespace:
    class_path = f"{TensorBoardLogger.__module__}.TensorBoardLogger"
    return Namespace(
        class_path=class_path, init_args=Namespace(save_dir=str(save_dir), name="runs", version=None)
    )


def test_commands_started_together_claim_different_run_folders(tmp_path):
    """TensorBoardLogger picks the next free version when it first writes: two commands that start before
    either writes both took version_0 (two fits wrote into one folder)."""
    first, second = _logger(tmp_path), _logger(tmp_path)
    claim_run_folder(first)
    claim_run_folder(second)
    assert (first.init_args.version, second.init_args.version) == (0, 1)
    # What the loggers then write into: the claimed folders.
    logs = [TensorBoardLogger(**vars(logger.init_args)).log_dir for logger in (first, second)]
    assert logs == [str(tmp_path / "runs" / "version_0"), str(tmp_path / "runs" / "version_1")]
    assert all(Path(log).is_dir() for log in logs)
    # A folder another command made after this one listed the runs: the next number is taken.
    (tmp_path / "runs" / "version_2").mkdir()
    (tmp_path / "runs" / "version_2" / "config.yaml").write_text("another run's\n")
    third = _logger(tmp_path)
    claim_run_folder(third)
    assert third.init_args.version == 3
    release_unused_run_folder()  # the claims above are empty: removed
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["version_2"]


def test_other_processes_of_a_ddp_run_claim_nothing(tmp_path, monkeypatch):
    """Lightning starts a DDP run's other processes through this CLI again: they must not make folders."""
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = _logger(tmp_path)
    claim_run_folder(logger)
    assert logger.init_args.version is None and not (tmp_path / "runs").exists()


def test_a_command_that_fails_leaves_no_run_folder(tiny_model, hub_dataset, workdir):
    with pytest.raises(SystemExit):
        cli_main(["fit", *tiny_args(tiny_model, hub_dataset, "--data.dataset=./no/such/folder")])
    assert not (workdir / "lightning_logs").exists()  # nor the folders made to hold it
    # Beside other runs: only its own folder goes.
    (workdir / "lightning_logs" / "tiny" / "version_0").mkdir(parents=True)
    with pytest.raises(SystemExit):
        cli_main(["fit", *tiny_args(tiny_model, hub_dataset, "--data.dataset=./no/such/folder")])
    assert [p.name for p in (workdir / "lightning_logs" / "tiny").iterdir()] == ["version_0"]


def test_a_fit_has_its_run_folder_before_it_starts(tiny_model, hub_dataset, workdir, monkeypatch):
    """The CLI claims the folder before the Trainer runs, so a second command started meanwhile lists it;
    TensorBoardLogger alone made it only at the first write, after the data and model had loaded."""
    seen = []

    @functools.wraps(L.Trainer.fit)  # LightningCLI reads the subcommand's arguments from its signature
    def fit(trainer, *args, **kwargs):
        seen.append(Path(trainer.logger.log_dir).resolve())
        seen.append(seen[-1].is_dir())

    monkeypatch.setattr(L.Trainer, "fit", fit)
    cli_main(["fit", *tiny_args(tiny_model, hub_dataset)])
    assert seen == [workdir / "lightning_logs" / "tiny" / "version_0", True]
