"""ONNX export and ONNX Runtime predict: inputs fed by name, and the same answers as PyTorch."""

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, make_review, tiny_args
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from bert_imdb.cli import cli_main
from bert_imdb.deployment.onnx_export import write_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

MINILM = SHARED / "models" / "all-MiniLM-L6-v2"


def reviews_of(n: int, seed: int, longest: int) -> list[str]:
    """`n` reviews of lengths up to about `longest` words, so that a batch of them is padded."""
    rng = random.Random(seed)
    return [" ".join([make_review(rng, i % 2)] * rng.randint(1, max(1, longest // 15))) for i in range(n)]


def assert_same_answers(model, tokenizer, onnx_file: Path, max_length: int) -> None:
    """PyTorch and ONNX Runtime on batches of several sizes and lengths: the same labels, probabilities
    within 1e-4. The session is fed by name, in the reverse of its graph's order."""
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [node.name for node in session.get_inputs()][::-1]
    for size, longest in ((1, 5), (3, 40), (8, max_length)):
        reviews = reviews_of(size, seed=size, longest=longest)
        encoded = tokenizer(
            reviews, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        with torch.no_grad():
            expected = model(**encoded).logits.softmax(-1).numpy()
        (logits,) = session.run(["logits"], {name: encoded[name].numpy() for name in names})
        got = torch.from_numpy(logits).softmax(-1).numpy()
        assert (got.argmax(-1) == expected.argmax(-1)).all()
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_onnx_export_names_inputs_as_forward_takes_them_with_dynamic_axes(workdir, best_checkpoint):
    out = workdir / "exported"
    cli_main(["export", f"--ckpt_path={best_checkpoint}", f"--output_dir={out}", "--format=onnx"])
    graph = onnx.load(out / "model.onnx").graph
    assert [node.name for node in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [node.name for node in graph.output] == ["logits"]
    for node in graph.input:  # batch and sequence: named (dynamic), not fixed sizes
        assert [bool(dim.dim_param) for dim in node.type.tensor_type.shape.dim] == [True, True]
    # Beside what the Hugging Face export has: the tokenizer and the model card.
    assert (out / "tokenizer.json").is_file()
    card = (out / "README.md").read_text()
    assert "## ONNX" in card and '"token_type_ids": encoded["token_type_ids"]' in card
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert_same_answers(model, AutoTokenizer.from_pretrained(out), out / "model.onnx", max_length=64)


def test_an_architecture_without_token_types_exports_without_them(tiny_model, tmp_path):
    tokenizer = BertTokenizerFast.from_pretrained(
        tiny_model, model_input_names=["input_ids", "attention_mask"]
    )
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128
    )
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(config).eval()
    write_onnx(model, tokenizer, tmp_path, int8=False)
    graph = onnx.load(tmp_path / "model.onnx").graph
    assert [node.name for node in graph.input] == ["input_ids", "attention_mask"]
    assert_same_answers(model, tokenizer, tmp_path / "model.onnx", max_length=64)


def predictions(folder: Path) -> list[dict]:
    return list(csv.DictReader(folder.open()))


def test_predict_with_onnxruntime_writes_what_pytorch_writes(
    tiny_model, hub_dataset, workdir, best_checkpoint
):
    out = workdir / "exported"
    cli_main(
        [
            "export",
            f"--ckpt_path={best_checkpoint}",
            f"--output_dir={out}",
            "--format=onnx",
            "--quantize=int8",
        ]
    )
    reviews = workdir / "reviews.txt"
    reviews.write_text("\n".join(reviews_of(20, seed=3, longest=80)) + "\n\n\x00\x00\n", encoding="utf-8")
    args = [*tiny_args(str(out), hub_dataset), f"--data.predict_file={reviews}"]
    written = {}
    for runtime, onnx_file in (
        ("torch", "model.onnx"),
        ("onnxruntime", "model.onnx"),
        ("onnxruntime", "model.int8.onnx"),
    ):
        target = workdir / f"{runtime}-{onnx_file}.csv"
        cli_main(
            [
                "predict",
                *args,
                f"--runtime={runtime}",
                f"--onnx_file={onnx_file}",
                f"--predictions.output_file={target}",
            ]
        )
        written[runtime, onnx_file] = predictions(target)
    torch_rows, onnx_rows = written["torch", "model.onnx"], written["onnxruntime", "model.onnx"]
    assert (
        [row["id"] for row in onnx_rows]
        == [row["id"] for row in torch_rows]
        == [str(i) for i in range(1, 21)]
    )
    assert [row["label"] for row in onnx_rows] == [row["label"] for row in torch_rows]
    for ours, theirs in zip(onnx_rows, torch_rows, strict=True):
        assert float(ours["pos_probability"]) == pytest.approx(float(theirs["pos_probability"]), abs=1e-4)
    int8_rows = written["onnxruntime", "model.int8.onnx"]
    assert [row["id"] for row in int8_rows] == [row["id"] for row in torch_rows]
    for ours, theirs in zip(int8_rows, torch_rows, strict=True):
        assert float(ours["pos_probability"]) == pytest.approx(float(theirs["pos_probability"]), abs=0.05)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["export", "--ckpt_path={ckpt}", "--output_dir=out", "--quantize=int8"], "add --format onnx"),
        (
            ["export", "--ckpt_path={mlm}", "--output_dir=out", "--format=onnx"],
            "--format onnx exports a classifier for deployment",
        ),
        (["predict", "--runtime=onnxruntime", "--ckpt_path={ckpt}"], "runs an export, not a checkpoint"),
        (
            ["predict", "--runtime=onnxruntime"],
            "has no model.onnx: write it with bert-imdb export --format onnx",
        ),
        (["fit", "--runtime=onnxruntime"], "--runtime onnxruntime is for predict"),
    ],
)
def test_onnx_refusals_are_one_line(tiny_model, hub_dataset, workdir, best_checkpoint, command, message):
    mlm = Path(__file__).parents[1] / "fixtures" / "legacy" / "mlm.ckpt"
    args = [arg.format(ckpt=best_checkpoint, mlm=mlm) for arg in command]
    if args[0] != "export":
        (workdir / "reviews.txt").write_text("a wonderful film\n", encoding="utf-8")
        args += [*tiny_args(tiny_model, hub_dataset), "--data.predict_file=reviews.txt"]
    with pytest.raises(SystemExit) as refused:
        cli_main(args)
    text = str(refused.value.code)
    assert text.startswith("error: ") and "\n" not in text and message in text, text
    assert not (workdir / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(not MINILM.is_dir(), reason="needs ../shared/models")
def test_the_real_minilm_exports_to_onnx_with_the_same_answers(tmp_path):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(MINILM, num_labels=2).eval()
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    write_onnx(model, tokenizer, tmp_path, int8=False)
    assert_same_answers(model, tokenizer, tmp_path / "model.onnx", max_length=256)
