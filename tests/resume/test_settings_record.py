import random
from pathlib import Path

import pytest
from conftest import REPO, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from bert_imdb.cli import cli_main
from bert_imdb.errors import UserError
from bert_imdb.resume.settings_record import (
    MAY_CHANGE,
    changed_settings,
    check_allowed_names,
    check_settings,
    may_change,
    recorded_settings,
)


@pytest.fixture(scope="module")
def quickstart_settings() -> dict:
    cli = cli_main(["--config", str(REPO / "configs" / "quickstart.yaml")], run=False)
    return recorded_settings(cli.config)


def test_every_setting_of_every_class_is_recorded_by_its_dotted_name(quickstart_settings):
    settings = quickstart_settings
    # The model's, the data module's, the Trainer's and the CLI's callbacks', with no list of names.
    for name in (
        "model.class_path",
        "model.learning_rate",
        "model.attention_dropout",
        "data.dataset",
        "data.truncation",
        "trainer.precision",
        "trainer.gradient_clip_val",
        "trainer.limit_train_batches",
        "early_stopping.min_delta",
        "seed_everything",
    ):
        assert name in settings, name


def test_a_change_of_any_setting_not_listed_as_safe_is_refused(quickstart_settings):
    # Drawn from every recorded setting: each one that may not change is refused, naming it and both values.
    rng = random.Random(2026)
    names = sorted(quickstart_settings)
    for name in rng.sample(names, len(names)):
        now = {**quickstart_settings, name: f"changed-{quickstart_settings[name]}"}
        if may_change(name):
            assert changed_settings(quickstart_settings, now) == []
            continue
        with pytest.raises(UserError) as refused:
            check_settings("last.ckpt", quickstart_settings, now)
        text = str(refused.value)
        assert f"{name}={quickstart_settings[name]}" in text and f"{name}=changed-" in text, text
        assert "\n" not in text
        check_settings("last.ckpt", quickstart_settings, now, allowed=[name])  # allowed on purpose


def test_callbacks_are_recorded_by_class_and_observers_left_out():
    config = {
        "trainer": {
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor", "init_args": {}},
                {"class_path": "my.Smoothing", "init_args": {"factor": 0.1}},
                {"class_path": "probes.KillAtStep", "init_args": {"step": 3}},  # says it changes nothing
                {"class_path": "my.Smoothing", "init_args": {"factor": 0.2}},
            ]
        }
    }
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    try:
        settings = recorded_settings(config)
    finally:
        sys.path.remove(str(REPO / "tests"))
    assert settings == {
        "trainer.callbacks.Smoothing.class_path": "my.Smoothing",
        "trainer.callbacks.Smoothing.factor": 0.1,
        "trainer.callbacks.Smoothing#2.class_path": "my.Smoothing",
        "trainer.callbacks.Smoothing#2.factor": 0.2,
    }


def test_the_safe_list_is_short_and_holds_nothing_that_shapes_training():
    assert len(MAY_CHANGE) < 50
    for name in (
        "model.learning_rate",
        "data.batch_size",
        "trainer.precision",
        "trainer.accumulate_grad_batches",
    ):
        assert not may_change(name), name


def test_an_allowed_name_must_be_a_setting():
    check_allowed_names(["model.learning_rate"], {"model.learning_rate": 1e-4})
    with pytest.raises(UserError, match=r"--resume_allow model\.lerning_rate: no such setting"):
        check_allowed_names(["model.lerning_rate"], {"model.learning_rate": 1e-4})


# The cases, each accepted silently before: through the CLI, on `--ckpt_path last` and a path.
CHANGES = {
    "--model.learning_rate=0.001": "model.learning_rate=0.002, this run has model.learning_rate=0.001",
    "--model.weight_decay=0.1": "model.weight_decay=0.01, this run has model.weight_decay=0.1",
    "--model.warmup_ratio=0.3": "model.warmup_ratio=0.1, this run has model.warmup_ratio=0.3",
    "--model.attention_dropout=0.1": "model.attention_dropout=0.0, this run has model.attention_dropout=0.1",
    "--model.attn_implementation=eager": "model.attn_implementation=sdpa, this run has",
    "--trainer.limit_train_batches=3": "trainer.limit_train_batches=None, this run has trainer.limit_train_batches=3",
    "--trainer.gradient_clip_val=1.0": "trainer.gradient_clip_val=None, this run has trainer.gradient_clip_val=1.0",
    "--data.dataset={other}": "data.dataset=",
    "--trainer.callbacks+=lightning.pytorch.callbacks.StochasticWeightAveraging": "trainer.callbacks.",
}


def test_a_resume_that_changes_what_is_trained_is_refused_in_one_line(
    tiny_model, hub_dataset, best_checkpoint, tmp_path
):
    from conftest import tiny_args, write_hub_layout

    other = write_hub_layout(tmp_path / "other-imdb")
    last = str(best_checkpoint.parent / "last.ckpt")  # of a one-epoch fit of tiny_args, in this folder
    for change, message in CHANGES.items():
        extra = change.format(other=other).split(" ")
        if "StochasticWeightAveraging" in change:
            extra.append("--trainer.callbacks.swa_lrs=0.01")
        for ckpt_path in ("last", last):
            args = [*tiny_args(tiny_model, hub_dataset), f"--ckpt_path={ckpt_path}", *extra]
            with pytest.raises(SystemExit) as refused:
                cli_main(["fit", *args])
            text = str(refused.value.code)
            assert text.startswith("error: checkpoint ") and message in text, (change, text)
            assert "\n" not in text and "--resume_allow" in text


def test_a_setting_a_later_version_adds_is_checked_without_any_list(tiny_model, hub_dataset, workdir):
    # probes.SmoothedClassifier: the classifier with one argument more, as a later version might add.
    from conftest import tiny_args

    args = tiny_args(tiny_model, hub_dataset, "--model=probes.SmoothedClassifier", "--trainer.max_epochs=1")
    cli_main(["fit", *args])
    with pytest.raises(
        SystemExit, match=r"model.label_smoothing=0.0, this run has model.label_smoothing=0.1"
    ):
        cli_main(["fit", *args, "--trainer.max_epochs=2", "--ckpt_path=last", "--model.label_smoothing=0.1"])


def test_a_learning_rate_allowed_to_change_is_the_one_the_optimizer_uses(tiny_model, hub_dataset, workdir):
    import torch
    from conftest import tiny_args

    first = cli_main(["fit", *tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1")])
    step = first.trainer.global_step
    resumed = cli_main(
        [
            "fit",
            *tiny_args(tiny_model, hub_dataset, "--model.learning_rate=0.0005", "--model.weight_decay=0.2"),
            "--ckpt_path=last",
            "--resume_allow=[model.learning_rate, model.weight_decay]",
        ]
    )
    optimizer = resumed.trainer.optimizers[0]
    scheduler = resumed.trainer.lr_scheduler_configs[0].scheduler
    # The new peak, at the schedule's step (linear decay to zero over the two epochs' steps).
    assert scheduler.base_lrs == [0.0005, 0.0005]
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.0005, 0.0005]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.2, 0.0]
    saved = torch.load(Path(resumed.trainer.log_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    changes = saved["callbacks"]["ExactResume"]["changes"]
    assert changes == [
        {"setting": "model.learning_rate", "from": 0.002, "to": 0.0005, "step": step},
        {"setting": "model.weight_decay", "from": 0.01, "to": 0.2, "step": step},
    ]
    # The export's card says so: its configuration holds the last values only.
    last = Path(resumed.trainer.log_dir) / "checkpoints" / "last.ckpt"
    cli_main(["export", f"--ckpt_path={last}", f"--output_dir={workdir / 'exported'}"])
    card = (workdir / "exported" / "README.md").read_text()
    assert f"- `model.learning_rate`: 0.002 to 0.0005 from step {step}" in card
    # And TensorBoard's HPARAMS of the resumed fit (its own event file, beside the first fit's).
    newest = max(Path(resumed.trainer.log_dir).glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    events = EventAccumulator(str(newest))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    session = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["resume.changes"].string_value == (
        f"model.learning_rate 0.002 to 0.0005 from step {step}; model.weight_decay 0.01 to 0.2 from step {step}"
    )


def test_another_worker_count_resumes_at_an_epoch_end_and_is_refused_inside_one(
    tiny_model, hub_dataset, workdir
):
    """Inside an epoch, the loader's place is kept per worker: another count ended in torchdata's
    AssertionError traceback (ee75b2f)."""
    short = ["--trainer.limit_train_batches=10", "--trainer.limit_val_batches=2"]

    def fit(*extra: str):
        return cli_main(["fit", *tiny_args(tiny_model, hub_dataset, *short, *extra)])

    inside = Path(fit("--trainer.max_steps=7").trainer.log_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as refused:
        fit("--trainer.max_steps=12", "--data.num_workers=1", f"--ckpt_path={inside}")
    assert "stopped inside an epoch (after batch 7), with data.num_workers=0" in str(refused.value.code)
    at_end = Path(fit("--trainer.max_epochs=1").trainer.log_dir) / "checkpoints" / "last.ckpt"
    resumed = fit("--trainer.max_epochs=2", "--data.num_workers=1", f"--ckpt_path={at_end}")
    assert resumed.trainer.global_step == 20
