import pytest
import torch
from conftest import tiny_args
from test_resume_scenarios import STOPS_EARLY_AT_STEP_20

from bert_imdb.cli import cli_main


def test_a_stopped_run_resumed_stays_stopped_unless_given_more_patience(tiny_model, hub_dataset, workdir):
    args = tiny_args(
        tiny_model, hub_dataset, *STOPS_EARLY_AT_STEP_20, "--trainer.logger.init_args.version=run"
    )
    assert cli_main(["fit", *args]).trainer.global_step == 20
    last = workdir / "lightning_logs" / "tiny" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 20
    # Resumed as it was: it had stopped, so nothing trains (Lightning would train on to max_epochs).
    assert cli_main(["fit", *args, f"--ckpt_path={last}"]).trainer.global_step == 20
    # With a patience of 3 the wait goes on from 1: validations at 30 and 40 make it 3.
    longer = cli_main(["fit", *args, "--early_stopping.patience=3", f"--ckpt_path={last}"])
    assert longer.trainer.global_step == 40


def test_early_stopping_watches_the_checkpoint_metric_unless_told(tiny_model, hub_dataset, workdir):
    built = cli_main(tiny_args(tiny_model, hub_dataset, "--early_stopping.patience=2"), run=False)
    [stop] = [c for c in built.trainer.callbacks if type(c).__name__ == "EarlyStop"]
    assert (stop.monitor, stop.mode, stop.patience) == ("val/acc", "max", 2)
    built = cli_main(
        tiny_args(tiny_model, hub_dataset, "--checkpoint.monitor=val/loss", "--early_stopping.patience=2"),
        run=False,
    )
    [stop] = [c for c in built.trainer.callbacks if type(c).__name__ == "EarlyStop"]
    assert (stop.monitor, stop.mode) == ("val/loss", "min")


@pytest.mark.parametrize("patience", ["0", "-3"])
def test_a_patience_below_one_ends_in_one_line(tiny_model, hub_dataset, workdir, patience):
    with pytest.raises(SystemExit, match=r"early_stopping.patience=-?\d+ must be at least 1"):
        cli_main(["fit", *tiny_args(tiny_model, hub_dataset, f"--early_stopping.patience={patience}")])
