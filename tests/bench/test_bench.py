import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, benchmark_script
from transformers import AutoConfig, AutoTokenizer

from bert_imdb.bench import cli as bench_cli
from bert_imdb.bench.architectures import FAMILIES, build_encoder, encoder_config
from bert_imdb.bench.cli import main
from bert_imdb.bench.options import LEVERS, MLM_LEVERS, parse_args
from bert_imdb.bench.runs import bert_imdb_args, build_bert_base, child_arguments, run_child
from bert_imdb.cli import cli_main
from bert_imdb.data.imdb import load_imdb
from bert_imdb.models.masked_lm import MaskedLanguageModel

TINY = [
    "--train-samples",
    "32",
    "--test-samples",
    "16",
    "--epochs",
    "2",
    "--max-length",
    "64",
    "--matmul-size",
    "64",
]


def check_the_three_recipes(report_file: Path, reviews: int, max_length: int, epochs: int) -> None:
    """The seed recipe, the tuned peer and bert_imdb ran on the same reviews, and the report says so."""
    report = json.loads(report_file.read_text())
    peer, tuned, ours = (report["runs"][run] for run in ("peer", "tuned_peer", "bert_imdb"))
    # Same reviews, same epochs: the same real tokens, whatever the padding and truncation; and so the
    # same model FLOPs, counted by each run its own way (bert_imdb per batch, the peers over their dataset).
    assert peer["real_tokens"] == tuned["real_tokens"] == ours["real_tokens"]
    assert peer["flops"] == tuned["flops"] == ours["flops"]
    assert peer["padded_tokens"] == reviews * max_length * epochs  # every review padded to max length
    # The tuned peer pads each batch of grouped reviews to its longest, rounded up to a multiple of 8.
    assert ours["real_tokens"] < tuned["padded_tokens"] < peer["padded_tokens"]
    assert tuned["padded_tokens"] % 8 == 0
    assert len(peer["test_acc_per_epoch"]) == epochs  # the seed recipe evaluates on test every epoch
    assert len(tuned["test_acc_per_epoch"]) == 1  # the tuned one once, at the end
    table = report_file.with_suffix(".md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| test accuracy |"))
    assert row.split("|")[2:5] == [f" {run['test_acc']:.3f} " for run in (peer, tuned, ours)]
    speedups = next(line for line in table.splitlines() if line.startswith("| wall time"))
    expected = [peer["wall_seconds"] / ours["wall_seconds"], tuned["wall_seconds"] / ours["wall_seconds"]]
    assert speedups.split("|")[5:7] == [f" {ratio:.2f}x " for ratio in expected]


def in_process(run: str, argv: list[str], workdir: Path, lever: str | None = None) -> dict:
    """The bench's `spawn`, its run in this process: a mode's path through the bench without a process's
    start-up (gpu.sh's part a runs its three in processes of their own)."""
    result = workdir / f"{run}-{lever}.json"
    args = parse_args(child_arguments(run, argv, result, lever))
    started = time.perf_counter()
    run_child(args)
    return {"wall_seconds": time.perf_counter() - started, **json.loads(result.read_text())}


def test_the_comparison_runs_each_system_once_per_seed_and_reports_mean_and_spread(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    monkeypatch.setattr(bench_cli, "spawn", in_process)  # gpu.sh's part a runs the three in processes
    results = workdir / "results"
    args = [*TINY, "--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)]
    sizes = ["--train-samples", "16", "--test-samples", "8", "--epochs", "1"]
    main([*args, *sizes, "--seeds", "3", "4", "--systems", "bert_imdb", "tuned_peer"])
    [report_file] = results.glob("*-full.json")
    report = json.loads(report_file.read_text())
    assert report["seeds"] == [3, 4]
    runs = report["runs"]
    assert list(runs) == ["tuned_peer", "bert_imdb"] and list(report["ratios"]) == ["tuned_peer"]
    # Each seed draws its own reviews, the same for both systems.
    first, second = ({run: runs[run]["seeds"][i]["real_tokens"] for run in runs} for i in (0, 1))
    assert len(set(first.values())) == len(set(second.values())) == 1 and first != second
    # bert_imdb tested in the fit's process; no validation in its one epoch, with nothing to pick between.
    assert all(seed_run["test_seconds"] > 0 for seed_run in runs["bert_imdb"]["seeds"])
    assert [seed_run["eval_reviews"] for seed_run in runs["bert_imdb"]["seeds"]] == [0, 0]
    table = report_file.with_suffix(".md").read_text()
    assert "seeds 3, 4 (each system once per seed" in table
    assert "seed peer" not in table and "| vs tuned peer |" in table
    accuracy = next(line for line in table.splitlines() if line.startswith("| test accuracy |"))
    assert accuracy.count(" ± ") == 2
    by_seed = next(line for line in table.splitlines() if line.startswith("Test accuracy by seed (3, 4): "))
    for run in runs.values():
        assert ", ".join(f"{seed_run['test_acc']:.3f}" for seed_run in run["seeds"]) in by_seed


def test_bench_levers_mode_measures_defaults_and_the_levers_named(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    monkeypatch.setattr(bench_cli, "spawn", in_process)  # the runs in this process: part a's start their own
    results = workdir / "results"
    args = [*TINY, "--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)]
    main([*args, "--levers", "random batches", "fp32", "--lever-steps", "3"])
    [report_file] = results.glob("*-levers.json")
    levers = json.loads(report_file.read_text())["levers"]
    assert list(levers) == ["defaults", "random batches", "fp32"]
    for run in levers.values():
        assert run["eval_reviews"] == 16  # one validation, all of it
    # Precision changes how the batches are computed, not which: the same tokens.
    assert levers["fp32"]["real_tokens"] == levers["defaults"]["real_tokens"]
    assert levers["fp32"]["precision"] == "32-true"
    # The same reviews in other batches: random batches pad more.
    assert levers["random batches"]["padding_fraction"] > levers["defaults"]["padding_fraction"]
    assert "| random batches |" in report_file.with_suffix(".md").read_text()


@pytest.fixture(scope="module")
def profile_step():
    """benchmarks/profile_step.py, a script, as a module: run in this process."""
    return benchmark_script("profile_step")


def test_profile_step_times_each_attention_setting_and_the_optimizer(
    tiny_model, hub_dataset, workdir, profile_step, capsys
):
    args = [
        "--model",
        tiny_model,
        "--dataset",
        hub_dataset,
        "--length",
        "16",
        "--steps",
        "1",
        "--warmup",
        "0",
    ]
    profile_step.main([*args, "--matmul-size", "64"])
    printed = capsys.readouterr().out
    timed = re.findall(r"^  (.+): [\d,.]+ ms$", printed, re.MULTILINE)
    settings = [
        "sdpa, attention dropout 0.1",
        "sdpa, attention dropout 0 (fused kernel)",
        "eager, attention dropout 0",
    ]
    assert timed[:3] == settings and timed[-2:] == ["foreach", "fused"]
    assert "on 8x16 tokens" in printed  # the batch it was asked for, without padding


def test_profile_step_times_a_masked_lm_step_under_each_head_and_attention(
    tiny_model, hub_dataset, workdir, profile_step, capsys
):
    args = ["--model", tiny_model, "--dataset", hub_dataset, "--mlm", "--length", "16", "--batch-size", "4"]
    profile_step.main([*args, "--steps", "1", "--warmup", "0"])
    printed = capsys.readouterr().out
    timed = re.findall(r"^  (.+): [\d,.]+ ms$", printed, re.MULTILINE)
    # fp32, and bf16 where the machine computes in it
    assert len(timed) in (3, 6) and timed == [
        "head on every position, sdpa, attention dropout 0.1",
        "head on scored positions, sdpa, attention dropout 0",
        "head on scored positions, eager (configs/mlm.yaml)",
    ] * (len(timed) // 3)
    assert "masked-LM training step" in printed and "on 4x16 tokens" in printed


def test_profile_steps_masked_lm_settings_build_what_their_rows_say(tiny_model, profile_step):
    for name, settings in profile_step.MLM_SETTINGS:
        module = MaskedLanguageModel(tiny_model, **settings)
        config = module.model.config
        assert config._attn_implementation == ("eager" if "eager" in name else "sdpa"), name
        assert config.attention_probs_dropout_prob == (0.1 if "dropout 0.1" in name else 0.0), name
        assert module.head_on_scored_positions == ("scored positions" in name), name


def test_the_gpu_script_refuses_missing_arguments_in_one_line(tmp_path):
    done = subprocess.run(
        [str(REPO / "benchmarks" / "gpu.sh"), str(tmp_path)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 2 and done.stderr.startswith("usage: benchmarks/gpu.sh"), done.stderr


GPU_PARTS = {
    "e": ["e sync check", "e MLM sync check"],
    "a": ["a seed recipe"],
    "b": ["b bert-base shapes"],
    "c": ["c full IMDb"],
    "d": ["d MLM"],
}


@pytest.fixture(scope="session")
def gpu_payload(tiny_model, hub_dataset, tmp_path_factory) -> Path:
    """The payload a GPU machine gets, packed once (gpu.sh only reads it): the model in fp16 (xz) and the
    reviews packed (benchmarks/payload.py); no wheels, which come from PyPI (tests/bench/test_payload.py
    checks that they cover what the image lacks)."""
    folder = tmp_path_factory.mktemp("gpu-payload")
    pack = [sys.executable, str(REPO / "benchmarks" / "payload.py"), "pack", "payload", "--no-wheels"]
    subprocess.run(
        [*pack, "--model", tiny_model, "--dataset", hub_dataset], cwd=folder, check=True, timeout=300
    )
    assert (folder / "payload" / "model" / "model.safetensors.xz").is_file()
    return folder / "payload"


@pytest.mark.parametrize("quick", ["0", "1"], ids=["the GPU run", "the CPU rehearsal"])
def test_every_part_of_the_gpu_script_gives_the_bench_arguments_it_takes(tmp_path, quick):
    """Each part's command, of the GPU run (which only a GPU machine runs) and of the rehearsal, parses."""
    model, data = tmp_path / "model", tmp_path / "data"
    model.mkdir(), data.mkdir()
    done = subprocess.run(
        [str(REPO / "benchmarks" / "gpu.sh"), str(tmp_path / "results"), str(model), str(data)],
        env={**os.environ, "GPU_SH_DRY": "1", "GPU_SH_QUICK": quick},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    commands = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert list(commands) == [name for names in GPU_PARTS.values() for name in names]
    for name, command in commands.items():
        python, m, module, *argv = shlex.split(command)
        assert [python, m, module] == ["python", "-m", "bert_imdb.bench"], name
        args = parse_args(argv)
        assert (args.model, args.dataset) == (str(model), str(data)), name
        assert args.sync_check == ("sync check" in name) and args.mlm == ("MLM" in name), name
        if args.config:
            assert (REPO / args.config).is_file(), name
        if args.levers:
            assert args.levers == ["MLM, head on every position"] and quick == "1", name


def test_the_bench_without_cuda_says_its_sync_check_did_not_run(tiny_model, hub_dataset, workdir):
    results = workdir / "results"
    args = [*TINY, "--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)]
    main([*args, "--sync-check", "--mlm"])
    [report] = results.glob("*-sync-check-mlm.json")
    assert json.loads(report.read_text())["sync_check"]["sync_check"] == "not run: no CUDA device"


def test_the_bert_base_shapes_are_bert_base_s_with_the_tokenizer_given(tiny_model, tmp_path):
    folder = build_bert_base(tiny_model, tmp_path / "bert-base", seed=0, layers=1)
    config = AutoConfig.from_pretrained(folder)
    shape = (config.hidden_size, config.num_attention_heads, config.intermediate_size)
    assert shape == (768, 12, 3072) and config.num_hidden_layers == 1
    assert config.max_position_embeddings == 512
    assert (
        config.vocab_size
        == len(AutoTokenizer.from_pretrained(folder))
        == len(AutoTokenizer.from_pretrained(tiny_model))
    )


def test_the_bench_runs_a_config_with_overrides_and_reports_it(tiny_model, hub_dataset, workdir, monkeypatch):
    """gpu.sh's part c, as its CPU rehearsal runs it, in this process."""
    monkeypatch.setattr(bench_cli, "spawn", in_process)
    results = workdir / "results"
    overrides = [
        "max_length=32",
        "max_train_samples=32",
        "max_val_samples=8",
        "max_test_samples=8",
        "num_proc=1",
    ]
    overrides.append("num_workers=0")
    main(
        [
            *["--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)],
            *["--matmul-size", "64", "--config", str(REPO / "configs" / "full-minilm.yaml")],
            "--override=--trainer.accelerator=cpu",
            "--override=--trainer.precision=32-true",
            "--override=--trainer.max_steps=1",
            *(f"--override=--data.{override}" for override in overrides),
        ]
    )
    [report_file] = results.glob("*-full-minilm.json")
    run = json.loads(report_file.read_text())["runs"]["bert_imdb"]
    assert run["eval_reviews"] == 8 and "test_acc" in run  # the overrides reached the run
    assert "| bert_imdb |" in report_file.with_suffix(".md").read_text()


def test_the_bench_measures_masked_lm_levers(tiny_model, hub_dataset, workdir, monkeypatch):
    """gpu.sh's part d, as its CPU rehearsal runs it, in this process."""
    monkeypatch.setattr(bench_cli, "spawn", in_process)
    results = workdir / "results"
    main(
        [
            *["--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)],
            *["--matmul-size", "64", "--mlm", "--lever-steps", "1", "--train-samples", "20"],
            *["--test-samples", "8", "--max-length", "32", "--batch-size", "8"],
            *["--levers", "MLM, head on every position"],
        ]
    )
    [report_file] = results.glob("*-mlm.json")
    levers = json.loads(report_file.read_text())["levers"]
    assert list(levers) == [*MLM_LEVERS][:2]
    # Blocks of exactly --max-length tokens (no padding), the same validation for each lever.
    assert all(run["real_tokens"] == run["padded_tokens"] > 0 for run in levers.values())
    assert len({run["eval_reviews"] for run in levers.values()}) == 1
    assert "| MLM, head on every position |" in report_file.with_suffix(".md").read_text()


@pytest.mark.slow
# In parts of under a minute each on 2 cores, which the suite's workers share. Part a (the three recipes,
# each in a process of its own, as on the GPU); the others with --gpu-rehearsal: the tests above check
# their arguments, and run c and d in this process, e's CPU report and b's shapes.
@pytest.mark.parametrize(
    "parts", ["a", *(pytest.param(parts, marks=pytest.mark.gpu_rehearsal) for parts in ("c", "d", "e b"))]
)
def test_the_gpu_script_runs_every_part_to_the_end_on_a_tiny_model(gpu_payload, workdir, parts):
    results = workdir / "results"
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    cached_before = set(cache.rglob("*"))
    done = subprocess.run(
        [
            str(REPO / "benchmarks" / "gpu.sh"),
            str(results),
            str(gpu_payload / "model"),
            str(gpu_payload / "imdb"),
        ],
        cwd=workdir,
        env={**os.environ, "GPU_SH_QUICK": "1", "GPU_SH_PARTS": parts},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Each run loaded and tokenized into an empty cache of its own, not into this session's.
    assert set(cache.rglob("*")) == cached_before
    summary = (results / "summary.txt").read_text().splitlines()
    expected = [name for part in parts.split() for name in GPU_PARTS[part]]
    assert [line.split(":")[0] for line in summary[1:]] == expected, summary
    assert all(": done in " in line for line in summary[1:]), "\n".join(summary) + done.stdout[-3000:]
    reports = {path.stem.split("-", 2)[2]: json.loads(path.read_text()) for path in results.glob("*.json")}
    runs = {"peer", "tuned_peer", "bert_imdb"}
    if "e" in parts:
        for check in ("sync-check", "sync-check-mlm"):
            assert reports[check]["sync_check"]["sync_check"] == "not run: no CUDA device"
    if "a" in parts:
        # Part a: gpu.sh's GPU_SH_QUICK recipe, 8 reviews of up to 64 tokens, 2 epochs.
        check_the_three_recipes(next(results.glob("*-full.json")), reviews=8, max_length=64, epochs=2)
    if "b" in parts:
        assert set(reports["full-bert-base"]["runs"]) == runs
        assert reports["full-bert-base"]["settings"]["shape"] == "bert-base"
        assert reports["full-bert-base"]["settings"]["layers"] == 1  # the rehearsal's one-layer bert-base
    if "c" in parts:
        minilm = reports["full-minilm"]["runs"]["bert_imdb"]
        assert minilm["eval_reviews"] == 8 and "test_acc" in minilm  # the overrides reached the run
    if "d" in parts:
        # The rehearsal's: the defaults and one lever (every lever's settings are built below).
        assert list(reports["mlm"]["levers"]) == [*MLM_LEVERS][:2]


@pytest.mark.parametrize("mlm", [False, True], ids=["classifier", "masked LM"])
def test_every_lever_builds_the_run_it_names(tiny_model, hub_dataset, workdir, mlm):
    """Each lever's settings reach a run the CLI builds (gpu.sh's rehearsal runs only one of them)."""
    mode = ["--mlm"] if mlm else []
    args = parse_args(["--model", tiny_model, "--dataset", hub_dataset, "--max-length", "64", *mode])
    for name, settings in (MLM_LEVERS if mlm else LEVERS).items():
        cli = cli_main([*bert_imdb_args(args, workdir), "--trainer.logger=false", *settings], run=False)
        assert isinstance(cli.model, MaskedLanguageModel) == mlm, name
        built = {"trainer.precision": cli.trainer.precision, **cli.model.hparams, **cli.datamodule.hparams}
        for setting in settings:
            key, value = setting.removeprefix("--").split("=")
            key = key.removeprefix("model.").removeprefix("data.")
            assert str(built[key]).lower() == ("none" if value == "null" else value), (name, setting)


def test_a_lever_of_the_other_mode_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--mlm", "--levers", "random batches"])
    assert "'random batches': a lever of the other mode" in capsys.readouterr().err


def test_the_bench_measures_each_encoder_family_against_the_tuned_peer(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    """--architectures builds each family from its own config class and runs both systems on it: the same
    steps, the same reviews."""
    monkeypatch.setattr(bench_cli, "spawn", in_process)
    results = workdir / "results"
    main(
        [
            *["--model", tiny_model, "--dataset", hub_dataset, "--output-dir", str(results)],
            *["--matmul-size", "64", "--lever-steps", "2", "--max-length", "32", "--batch-size", "4"],
            *["--architectures", "distilbert", "modernbert", "--sizes", "tiny"],
        ]
    )
    [report_file] = results.glob("*-architectures.json")
    rows = json.loads(report_file.read_text())["architectures"]
    assert list(rows) == ["distilbert tiny", "modernbert tiny"]
    for row in rows.values():
        # Both trained the 2 steps of 4 reviews each: the same real tokens.
        assert row["bert_imdb"]["real_tokens"] == row["tuned_peer"]["real_tokens"] > 0
    assert rows["distilbert tiny"]["parameters"] != rows["modernbert tiny"]["parameters"]
    table = next(results.glob("*-architectures.md")).read_text()
    assert "| modernbert (answerdotai/ModernBERT-base) | tiny |" in table


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_is_built_at_its_checkpoints_base_size(family, tiny_model):
    """The base dimensions are the named checkpoint's (hidden 768), not the config class's defaults (ALBERT's
    are xxlarge, DeBERTa-v2's xlarge, ELECTRA's small), for the tokenizer given."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = encoder_config(family, "base", tokenizer, 64)
    assert config.model_type == family
    assert (config.hidden_size, config.vocab_size, config.pad_token_id) == (768, len(tokenizer), 0)
    assert config.num_hidden_layers == {"distilbert": 6, "modernbert": 22}.get(family, 12)


@pytest.mark.parametrize(("family", "types"), [("bert", True), ("distilbert", False)])
def test_a_built_family_gets_token_type_ids_only_where_its_model_takes_them(
    family, types, tiny_model, tmp_path
):
    folder, _ = build_encoder(family, "tiny", tiny_model, tmp_path / family, 0, 64)
    assert ("token_type_ids" in AutoTokenizer.from_pretrained(folder).model_input_names) == types


def test_eval_batches_times_every_batch_size_on_the_same_reviews(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # it imports onnx_runtimes, beside it
    script = benchmark_script("eval_batches")
    argv = ["--model", tiny_model, "--dataset", hub_dataset, "--reviews", "20", "--max-length", "32"]
    monkeypatch.setattr(
        "sys.argv", ["eval_batches.py", *argv, "--batch-sizes", "3", "8", "--out", str(workdir)]
    )
    script.main()
    [report] = workdir.glob("*-eval-batches.json")
    assert list(json.loads(report.read_text())["tokens_per_second"]) == ["3", "8"]
    table = report.with_suffix(".md")
    assert "| reviews a batch | 3 | 8 |" in table.read_text()


def test_onnx_runtimes_labels_the_whole_test_split_with_the_runtimes_asked(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    script = benchmark_script("onnx_runtimes")
    argv = ["--model", tiny_model, "--dataset", hub_dataset, "--reviews", "6", "--max-length", "32"]
    agreement = ["--agreement", "100000", "--agreement-runtimes", "torch-fp32", "ort-int8"]
    monkeypatch.setattr("sys.argv", ["onnx_runtimes.py", *argv, *agreement, "--out", str(workdir)])
    script.main()
    [report] = workdir.glob("*-onnx.json")
    results = json.loads(report.read_text())["results"]
    test_reviews = len(load_imdb(hub_dataset)["test"])
    int8 = results[script.RUNTIME_KEYS["ort-int8"]]
    assert {"accuracy", "agreement_labels_as_fp32"} <= set(int8)
    assert "accuracy" not in results[script.RUNTIME_KEYS["ort-fp32"]]  # not asked: minutes per thousand
    table = report.with_suffix(".md").read_text()
    assert f"accuracy and labels on the first {test_reviews} of the test split's shuffle" in table
    assert f"| {script.RUNTIME_KEYS['ort-fp32']} |" in table and table.count(" - | - |") == len(results) - 2
