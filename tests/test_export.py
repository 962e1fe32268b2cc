import csv
import errno
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import mlm_args, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

from bert_imdb.cli import cli_main
from bert_imdb.models.classifier import SentimentClassifier


def test_export_matches_predict_through_a_pipeline(tiny_model, hub_dataset, workdir, best_checkpoint):
    out = workdir / "exported"
    assert cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}"]) is None
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    # The temperature the checkpoint's validation fitted is folded into the exported head.
    temperature = torch.load(best_checkpoint, weights_only=True)["calibration"]["temperature"]
    assert temperature != 1.0 and model.config.calibration_temperature == temperature
    module = SentimentClassifier.load_from_checkpoint(best_checkpoint, map_location="cpu").eval()
    encoded = AutoTokenizer.from_pretrained(out)(["a wonderful film"], return_tensors="pt")
    with torch.no_grad():
        raw = module.model(**encoded).logits
        torch.testing.assert_close(model.eval()(**encoded).logits, raw / temperature)

    reviews = [
        "a wonderful excellent film",
        "awful boring terrible plot",
        "the movie was a story",
        # Longer than data.max_length=64 tokens: both sides must truncate it the same way.
        " ".join(["the film was dull and painful"] * 30 + ["great wonderful superb"] * 10),
    ]
    (workdir / "reviews.txt").write_text("\n".join(reviews) + "\n", encoding="utf-8")
    predict = cli_main(
        [
            "predict",
            *tiny_args(tiny_model, hub_dataset),
            f"--ckpt_path={best_checkpoint}",
            f"--data.predict_file={workdir / 'reviews.txt'}",
            "--data.truncation=head",  # as the pipeline's tokenizer truncates
        ]
    )
    predicted = list(csv.DictReader((Path(predict.trainer.log_dir) / "predictions.csv").open()))

    classify = pipeline("text-classification", model=str(out), device=torch.device("cpu"))
    piped = classify(reviews, truncation=True)
    assert [p["label"] for p in piped] == [row["label"] for row in predicted]
    for p, row in zip(piped, predicted, strict=True):
        assert p["score"] == pytest.approx(float(row["probability"]), abs=1e-4)


def test_export_never_writes_into_a_folder_with_files(workdir, best_checkpoint):
    out = workdir / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit, match=r"not empty: pass another --output_dir, or --overwrite true"):
        cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}"])
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("damage", ["truncate", "text", "missing"])
def test_bad_checkpoints_end_in_one_line(tiny_model, hub_dataset, workdir, best_checkpoint, damage):
    bad = workdir / "bad.ckpt"
    if damage == "truncate":
        bad.write_bytes(best_checkpoint.read_bytes()[:5000])
    elif damage == "text":
        bad.write_text("not a checkpoint")
    message = (
        "does not exist" if damage == "missing" else r"cannot be read \(truncated, or not a checkpoint\)"
    )
    for command in (
        ["export", f"--ckpt_path={bad}", f"--output_dir={workdir / 'out'}"],
        ["test", *tiny_args(tiny_model, hub_dataset), f"--ckpt_path={bad}"],
    ):
        with pytest.raises(SystemExit, match=message) as exit_:
            cli_main(command)
        assert "\n" not in str(exit_.value.code)


@pytest.mark.parametrize("nsp", [False, True], ids=["mlm", "mlm+nsp"])
def test_mlm_export_loads_as_masked_lm_and_starts_a_classifier(
    tiny_model, tiny_pretraining_model, text_dataset, workdir, nsp
):
    model = tiny_pretraining_model if nsp else tiny_model
    fit = cli_main(["fit", *mlm_args(model, text_dataset, f"--model.nsp={str(nsp).lower()}")])
    last = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"
    out = workdir / "exported-mlm"
    cli_main(["export", f"--ckpt_path={last}", f"--output_dir={out}"])

    trained = fit.model.model
    masked_lm = AutoModelForMaskedLM.from_pretrained(out)
    assert torch.equal(
        masked_lm.cls.predictions.transform.dense.weight, trained.cls.predictions.transform.dense.weight
    )
    assert AutoTokenizer.from_pretrained(out).model_max_length == 32  # the run's data.max_length

    classifier = SentimentClassifier(str(out))
    encoder = {k: v for k, v in trained.bert.state_dict().items() if not k.startswith("pooler")}
    started = classifier.model.bert.state_dict()
    assert encoder and all(torch.equal(started[k], v) for k, v in encoder.items())


def test_export_to_a_path_that_is_a_file_ends_in_one_line(workdir, best_checkpoint):
    target = workdir / "model.bin"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={target}", "--overwrite=true"])
    assert str(exit_.value.code) == f"error: {target} is a file: pass a folder (new or empty) as --output_dir"
    assert target.read_text() == "keep me"


def card(folder: Path) -> tuple[dict, str]:
    """The front matter and text of an exported folder's README.md."""
    _, front, text = (folder / "README.md").read_text().split("---\n", 2)
    return yaml.safe_load(front), text


def test_export_writes_a_model_card_with_the_runs_metrics(tiny_model, hub_dataset, workdir, best_checkpoint):
    out = workdir / "exported"
    cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}"])
    front, text = card(out)
    assert front["pipeline_tag"] == "text-classification" and "base_model" not in front  # a local folder
    assert f"- **Base model**: `{Path(tiny_model).name}`" in text  # a local path by its name only
    assert (
        f"- **Training data**: `{Path(hub_dataset).name}`: 320 training reviews, 80 held out for validation."
        in text
    )
    # max_length 64, head+tail: the first 64 // 4 and the rest but [CLS] and [SEP] from the end.
    assert "kept their first 16 and last 46 tokens (head+tail)" in text and "bert_imdb predict" in text
    val_acc = re.search(r"val_acc(\d\.\d{4})", best_checkpoint.name).group(1)
    # With its 95% interval, which holds it.
    interval = re.search(rf"\| `val/acc` \| {val_acc} \(95% CI (\d\.\d{{4}})-(\d\.\d{{4}})\) \|", text)
    assert interval and float(interval[1]) <= float(val_acc) <= float(interval[2]), text
    assert "| `test/acc` | not recorded |" in text
    assert yaml.safe_load(text.split("```yaml\n")[1].split("```")[0])["data"]["max_length"] == 64

    # Tested, the checkpoint's run holds its test metrics too; exported again over the first export.
    test = cli_main(["test", *tiny_args(tiny_model, hub_dataset), f"--ckpt_path={best_checkpoint}"])
    cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}", "--overwrite=true"])
    found = test.trainer.callback_metrics
    text = card(out)[1]
    for score in ("acc", "f1"):
        low, value, high = (float(found[f"test/{score}{end}"]) for end in ("_ci_low", "", "_ci_high"))
        assert low < value < high
        assert f"| `test/{score}` | {value:.4f} (95% CI {low:.4f}-{high:.4f}) |" in text
    # Calibration: the validation's temperature and reliability bins, and the test's ECE before and after.
    assert f"| `test/ece` | {float(found['test/ece']):.4f} |" in text
    temperature = torch.load(best_checkpoint, weights_only=True)["calibration"]["temperature"]
    assert f"temperature T = {temperature:.4f}" in text and (out / "reliability.png").is_file()
    assert f"{float(found['test/ece_calibrated']):.4f} after the temperature" in text
    # Accuracy by length: every validation and test review in one bucket of each kind.
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| review tokens ")]
    assert sum(int(r[1]) for r in rows) == 80 and sum(int(r[3]) for r in rows if r[3] != "-") == 64

    # A checkpoint whose run folder is gone (its validation metrics travel with it, its test's do not), and
    # one from before checkpoints kept them: the card says so, and export works.
    moved = workdir / "elsewhere" / "model.ckpt"
    moved.parent.mkdir()
    checkpoint = torch.load(best_checkpoint, weights_only=True)
    torch.save(checkpoint, moved)
    cli_main(["export", f"--ckpt_path={moved}", f"--output_dir={workdir / 'moved'}"])
    text = card(workdir / "moved")[1]
    assert f"| `val/acc` | {val_acc} (95% CI " in text and "| `test/acc` | not recorded |" in text
    del checkpoint["callbacks"]["ValidationRecord"]
    torch.save(checkpoint, moved)
    cli_main(["export", f"--ckpt_path={moved}", f"--output_dir={workdir / 'older'}"])
    assert "| `val/acc` | not recorded |" in card(workdir / "older")[1]


def test_a_test_under_other_data_settings_leaves_the_cards_test_alone(
    tiny_model, hub_dataset, workdir, best_checkpoint
):
    whole = cli_main(["test", *tiny_args(tiny_model, hub_dataset), f"--ckpt_path={best_checkpoint}"])
    # Another truncation of the long reviews only, at the same step: it must not pass for the whole test.
    other = ("--data.truncation=tail", "--data.max_length=32", "--data.test_min_tokens=33")
    long_only = cli_main(
        ["test", *tiny_args(tiny_model, hub_dataset, *other), f"--ckpt_path={best_checkpoint}"]
    )
    found = long_only.trainer.callback_metrics
    assert "test_tail_max32_min33/acc" in found and not any(name.startswith("test/") for name in found)
    out = workdir / "exported"
    cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}"])
    text = card(out)[1]
    accuracy = float(whole.trainer.callback_metrics["test/acc"])
    assert f"| `test/acc` | {accuracy:.4f} (95% CI " in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| review tokens ")]
    assert sum(int(r[3]) for r in rows if r[3] != "-") == 64  # every test review, not the long ones
    # Its own records sit beside the test's, at the checkpoint's step; the HPARAMS tab holds one test.
    events = EventAccumulator(str(best_checkpoint.parent.parent), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    reviews = [t for t in scalars if t.startswith("test_tail_max32_min33_by_length/reviews_tokens_")]
    counted = sum(events.Scalars(tag)[-1].value for tag in reviews)
    assert counted == len(long_only.datamodule.datasets["test"]) < 64
    assert [e.value for e in events.Scalars("hp/test_acc")] == [pytest.approx(accuracy)]


def test_the_model_card_holds_no_local_path(tiny_model, hub_dataset, workdir, best_checkpoint):
    """A card is for publishing: it held the absolute paths of the checkpoint, the model and the data."""
    out = workdir / "exported"
    cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}"])
    card = (out / "README.md").read_text()
    for local in (str(best_checkpoint), tiny_model, hub_dataset, str(workdir.parent)):
        assert local not in card, local
    assert f"`{best_checkpoint.name}`" in card and f"`{Path(tiny_model).name}`" in card


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_export_that_fails_halfway_leaves_nothing_half_written(workdir, best_checkpoint, monkeypatch):
    out = workdir / "exported"
    cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}"])
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    # The disk fills up once the weights and the tokenizer are written, before the reliability figure.
    monkeypatch.setattr("bert_imdb.export.save_reliability_figure", no_space)
    for target, overwrite in ((out, "true"), (workdir / "new", "false")):
        with pytest.raises(
            SystemExit, match=rf"cannot write the export to {target} \(No space left on device\)"
        ):
            cli_main(
                [
                    "export",
                    f"--ckpt_path={best_checkpoint}",
                    f"--output_dir={target}",
                    f"--overwrite={overwrite}",
                ]
            )
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # the older export, whole
    assert sorted(path.name for path in workdir.iterdir()) == sorted(["exported", "lightning_logs"])


def test_export_from_another_folder_takes_the_model_path_given(
    tiny_model, workdir, best_checkpoint, monkeypatch
):
    """A run started from its project folder records a relative model path; export run elsewhere could not
    find it, and had no way to be told."""
    import shutil

    shutil.copytree(tiny_model, workdir / "models" / "tiny")
    checkpoint = torch.load(best_checkpoint, weights_only=False)
    checkpoint["hyper_parameters"]["model_name_or_path"] = "./models/tiny"
    relative = workdir / "relative.ckpt"
    torch.save(checkpoint, relative)
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = elsewhere / "exported"
    with pytest.raises(SystemExit) as exit_:
        cli_main(["export", f"--ckpt_path={relative}", f"--output_dir={out}"])
    assert re.fullmatch(
        r"error: the checkpoint's model \./models/tiny does not exist from .*elsewhere: run export from the "
        r"folder the run was started in, or pass --model_name_or_path <its model folder or Hub id>",
        str(exit_.value.code),
    )
    assert not out.exists()
    cli_main(
        ["export", f"--ckpt_path={relative}", f"--output_dir={out}", "--model_name_or_path=../models/tiny"]
    )
    exported = AutoModelForSequenceClassification.from_pretrained(out)
    weights = checkpoint["state_dict"]["model.bert.encoder.layer.0.attention.self.query.weight"]
    assert torch.equal(exported.bert.encoder.layer[0].attention.self.query.weight, weights)
