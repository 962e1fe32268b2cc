"""Generated combinations of the Trainer flags that change the loops or the step, on the tiny model.

Each drawn fit either ends normally, leaving a last.ckpt that a longer fit resumes from (where Lightning
checkpoints at all: not under fast_dev_run or enable_checkpointing false), or is refused in one line. No
other ending (a traceback, a silent fit without a checkpoint) passes. `pytest --flag-draws N --flag-seed S`
draws more; a failing draw is kept below as a named case.
"""

import random
from pathlib import Path

import torch
from conftest import tiny_args

from bert_imdb.cli import cli_main

# Each flag's values: the first is the run's own (6 training batches of 8, 2 validation batches).
FLAGS = {
    "limit_train_batches": [6, 0.1, 1, 0, 0.0],
    "limit_val_batches": [2, 0, 0.5, 1],
    "overfit_batches": [0, 2, 0.05],
    "check_val_every_n_epoch": [1, 2, 3],
    "val_check_interval": [None, 0.5, 2, 1.0, 7],
    "num_sanity_val_steps": [2, 0, -1],
    "fast_dev_run": [False, True, 2],
    "logger": [None, False],
    "enable_checkpointing": [True, False],
    "max_epochs": [1, 2, 0],
    "max_steps": [-1, 3, 0],
    "accumulate_grad_batches": [1, 2, 4],
    "gradient_clip_val": [None, 1.0],
}

# Cases that failed once, kept by name: flags that Lightning documents must run, not be refused.
MUST_RUN = {
    "overfit-grouped-batches": {"overfit_batches": 2},  # TypeError in the collator (ee75b2f)
    "no-logger": {"logger": False},  # LearningRateMonitor's error, config.yaml in the working directory
    "validation-never-comes": {"check_val_every_n_epoch": 2},  # no checkpoint at all (ee75b2f)
}
NAMED = {
    **MUST_RUN,
    "trains-nothing": {"max_epochs": 0},  # exit 0 without a step or a checkpoint (ee75b2f)
    "validation-after-the-epoch": {"val_check_interval": 7},  # Lightning's ValueError traceback (ee75b2f)
}


def draw(seed: int) -> dict:
    rng = random.Random(seed)
    return {name: rng.choice(values[1:]) for name, values in FLAGS.items() if rng.random() < 0.3}


def pytest_generate_tests(metafunc):
    if "flags" in metafunc.fixturenames:
        n, seed = metafunc.config.getoption("flag_draws"), metafunc.config.getoption("flag_seed")
        cases = {**NAMED, **{f"draw-{seed + i}": draw(seed + i) for i in range(n)}}
        metafunc.parametrize("case, flags", list(cases.items()), ids=list(cases))


def as_args(flags: dict) -> list[str]:
    base = {name: values[0] for name, values in FLAGS.items()}
    args = []
    for name, value in {**base, **flags}.items():
        if value is None and name == "logger":
            continue  # the CLI's TensorBoard logger
        args.append(f"--trainer.{name}={'null' if value is None else str(value).lower()}")
    return args


def test_trainer_flags_end_in_a_resumable_checkpoint_or_one_line(
    tiny_model, hub_dataset, workdir, case, flags
):
    args = tiny_args(tiny_model, hub_dataset, *as_args(flags))
    try:
        fit = cli_main(["fit", *args])
    except SystemExit as refused:
        text = str(refused.code)
        assert case not in MUST_RUN, text
        assert text.startswith("error: ") and "\n" not in text, text
        assert not (workdir / "lightning_logs").exists() or not list(workdir.rglob("*.ckpt"))
        return
    trainer = fit.trainer
    assert not (workdir / "config.yaml").exists()
    if (
        trainer.fast_dev_run
        or not trainer.checkpoint_callbacks
        or fit.config.fit.last_checkpoint.save_top_k == 0
    ):
        assert not list(workdir.rglob("*.ckpt"))
        return
    (last,) = workdir.rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == trainer.global_step > 0
    # A longer fit resumes from it: the run is exact (ExactResume checks every setting) and goes on.
    more = {**flags, "max_epochs": trainer.current_epoch + 2, "max_steps": -1}
    resumed = cli_main(["fit", *tiny_args(tiny_model, hub_dataset, *as_args(more)), f"--ckpt_path={last}"])
    assert resumed.trainer.global_step > trainer.global_step
    assert Path(last).exists()
