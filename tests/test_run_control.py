"""Run control from the command line: numbers out of range, evaluation without a checkpoint."""

import pytest
from conftest import tiny_args

from bert_imdb.cli import cli_main


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "--seed_everything=99999999999",
            "seed_everything=99999999999 is out of range: use an integer from 0 to 4294967295",
        ),
        ("--seed_everything=-1", "seed_everything=-1 is out of range"),
        (
            "--trainer.accumulate_grad_batches=0",
            "trainer.accumulate_grad_batches=0 is out of range: use 1 or more",
        ),
        ("--trainer.max_steps=-2", "trainer.max_steps=-2 is out of range: use -1 or more"),
        ("--trainer.max_epochs=-5", "trainer.max_epochs=-5 is out of range"),
        ("--trainer.val_check_interval=0", "trainer.val_check_interval=0 is out of range"),
        (
            "--trainer.val_check_interval=1.5",
            "trainer.val_check_interval=1.5 is out of range: use a fraction",
        ),
        ("--trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is out of range"),
        ("--trainer.limit_val_batches=-1", "trainer.limit_val_batches=-1 is out of range"),
        (
            "--trainer.check_val_every_n_epoch=0",
            "trainer.check_val_every_n_epoch=0 is out of range: use 1 or more",
        ),
        ("--trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 is out of range: use 0 or more"),
        ("--trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0 is out of range"),
    ],
)
def test_numbers_out_of_range_are_refused_in_one_line_with_the_range(
    tiny_model, hub_dataset, workdir, override, message
):
    with pytest.raises(SystemExit) as refused:
        cli_main(["fit", *tiny_args(tiny_model, hub_dataset), override])
    text = str(refused.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text, text
    assert not (workdir / "lightning_logs").exists()


def test_a_test_without_a_checkpoint_says_it_scores_untrained_weights(
    tiny_model, hub_dataset, workdir, caplog
):
    with pytest.warns(UserWarning, match="test without --ckpt_path scores the weights"):
        test = cli_main(["test", *tiny_args(tiny_model, hub_dataset)])
    metrics = test.trainer.callback_metrics
    assert "test_untrained/acc" in metrics and "test/acc" not in metrics
