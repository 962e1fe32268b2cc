"""Run control from the command line: numbers out of range, evaluation without a checkpoint."""

from pathlib import Path

import pytest
import torch
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


def test_a_dataset_with_extra_columns_trains_and_says_which_it_leaves_out(tiny_model, workdir, tmp_path):
    from conftest import make_rows
    from datasets import Dataset

    folder = tmp_path / "imdb-with-more"
    folder.mkdir()
    for split, n in (("train", 80), ("test", 16)):
        rows = [
            {**row, "url": f"https://example.org/{i}", "rating": 8 if row["label"] else 2}
            for i, row in enumerate(make_rows(n, 0))
        ]
        Dataset.from_list(rows).to_json(str(folder / f"{split}.jsonl"))
    with pytest.warns(UserWarning, match="columns url, rating are not used"):
        fit = cli_main(["fit", *tiny_args(tiny_model, str(folder), "--trainer.max_epochs=1")])
    assert fit.trainer.global_step > 0


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_gradient_clipping_works_under_every_precision(tiny_model, hub_dataset, workdir, precision):
    # bf16-mixed with the fused AdamW ended in Lightning's RuntimeError (it cannot clip an optimizer that
    # unscales its own gradients); on a CPU without bf16, bf16-mixed runs in 32-true.
    fit = cli_main(
        [
            "fit",
            *tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1"),
            "--trainer.gradient_clip_val=1.0",
            f"--trainer.precision={precision}",
        ]
    )
    assert fit.trainer.global_step > 0
    assert not fit.trainer.optimizers[0].defaults["fused"]


def test_a_finished_fit_leaves_last_ckpt_whatever_the_validation_settings(tiny_model, hub_dataset, workdir):
    # check_val_every_n_epoch 2 and one epoch: no validation, so no save came from one (ee75b2f wrote none).
    args = ["--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=2"]
    fit = cli_main(["fit", *tiny_args(tiny_model, hub_dataset, *args)])
    last = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == fit.trainer.global_step > 0
