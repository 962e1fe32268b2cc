"""Any Hugging Face encoder, not only BERT: each architecture fine-tunes, tests, predicts and exports through
the CLI, and the export agrees with predict through a transformers pipeline; decoders and incomplete model
folders are refused in one line."""

import csv
from pathlib import Path

import pytest
import torch
from conftest import mlm_args, tiny_args
from transformers import (
    AlbertConfig,
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    BertTokenizerFast,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    GPT2Config,
    GPT2Model,
    ModernBertConfig,
    RobertaConfig,
    XLMRobertaConfig,
    pipeline,
)

from bert_imdb.cli import cli_main

SMALL = {
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
}
# Each with the tiny WordPiece vocabulary (its [PAD] is 0, [CLS] 2, [SEP] 3) and a random body.
ARCHITECTURES = {
    "distilbert": lambda vocab: DistilBertConfig(
        vocab_size=vocab,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=128,
        pad_token_id=0,
    ),
    "roberta": lambda vocab: RobertaConfig(
        vocab_size=vocab,
        hidden_size=32,
        **{**SMALL, "max_position_embeddings": 130},
        pad_token_id=0,
        type_vocab_size=1,
    ),
    "xlm-roberta": lambda vocab: XLMRobertaConfig(
        vocab_size=vocab,
        hidden_size=32,
        **{**SMALL, "max_position_embeddings": 130},
        pad_token_id=0,
        type_vocab_size=1,
    ),
    "electra": lambda vocab: ElectraConfig(vocab_size=vocab, embedding_size=16, hidden_size=32, **SMALL),
    "deberta-v2": lambda vocab: DebertaV2Config(vocab_size=vocab, hidden_size=32, **SMALL, pad_token_id=0),
    "albert": lambda vocab: AlbertConfig(
        vocab_size=vocab, embedding_size=16, hidden_size=32, **SMALL, pad_token_id=0
    ),
    "modernbert": lambda vocab: ModernBertConfig(
        vocab_size=vocab,
        hidden_size=32,
        **SMALL,
        pad_token_id=0,
        cls_token_id=2,
        sep_token_id=3,
        bos_token_id=2,
        eos_token_id=3,
    ),
}


@pytest.fixture(scope="session")
def tiny_encoders(tiny_model, tmp_path_factory) -> dict[str, str]:
    """A random tiny model of each architecture, saved with save_pretrained beside the tiny tokenizer, which
    gives token type ids only where the model takes them (as each family's own tokenizer does)."""
    folders = {}
    for name, config_of in ARCHITECTURES.items():
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        vocab = len(BertTokenizerFast.from_pretrained(tiny_model))
        model = AutoModel.from_config(config_of(vocab))
        model.save_pretrained(folder)
        takes_types = "token_type_ids" in model.forward.__code__.co_varnames
        names = (
            ["input_ids", "token_type_ids", "attention_mask"]
            if takes_types
            else ["input_ids", "attention_mask"]
        )
        BertTokenizerFast.from_pretrained(tiny_model, model_input_names=names).save_pretrained(folder)
        folders[name] = str(folder)
    return folders


REVIEWS = [
    "a wonderful excellent film",
    "awful boring terrible plot",
    "the movie was a story",
    # Longer than data.max_length=64 tokens: both sides truncate it, and batches hold padding.
    " ".join(["the film was dull and painful"] * 30 + ["great wonderful superb"] * 10),
]


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_encoder_fine_tunes_tests_predicts_and_exports(
    tiny_encoders, hub_dataset, workdir, architecture
):
    model = tiny_encoders[architecture]
    fit = cli_main(["fit", *tiny_args(model, hub_dataset, "--trainer.max_epochs=1")])
    best = fit.trainer.checkpoint_callback.best_model_path
    test = cli_main(["test", *tiny_args(model, hub_dataset), f"--ckpt_path={best}"])
    assert 0 <= float(test.trainer.callback_metrics["test/acc"]) <= 1
    out = workdir / "exported"
    cli_main(["export", f"--ckpt_path={best}", f"--output_dir={out}"])
    (workdir / "reviews.txt").write_text("\n".join(REVIEWS) + "\n", encoding="utf-8")
    predict = cli_main(
        [
            "predict",
            *tiny_args(model, hub_dataset),
            f"--ckpt_path={best}",
            f"--data.predict_file={workdir / 'reviews.txt'}",
            "--data.truncation=head",  # as the pipeline's tokenizer truncates
        ]
    )
    predicted = list(csv.DictReader((Path(predict.trainer.log_dir) / "predictions.csv").open()))
    classify = pipeline("text-classification", model=str(out), device=torch.device("cpu"))
    piped = classify(REVIEWS, truncation=True, max_length=64)
    assert [p["label"] for p in piped] == [row["label"] for row in predicted]
    for p, row in zip(piped, predicted, strict=True):
        assert p["score"] == pytest.approx(float(row["probability"]), abs=1e-5)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_encoder_pre_trains_with_masked_lm_and_fine_tunes_from_it(
    tiny_encoders, text_dataset, hub_dataset, workdir, architecture
):
    fit = cli_main(["fit", *mlm_args(tiny_encoders[architecture], text_dataset)])
    assert torch.isfinite(fit.trainer.callback_metrics["val/perplexity"])
    out = workdir / "mlm-export"
    cli_main(
        [
            "export",
            f"--ckpt_path={Path(fit.trainer.log_dir) / 'checkpoints' / 'last.ckpt'}",
            f"--output_dir={out}",
        ]
    )
    assert (
        AutoModelForMaskedLM.from_pretrained(out).config.model_type
        == AutoConfig.from_pretrained(tiny_encoders[architecture]).model_type
    )
    tuned = cli_main(["fit", *tiny_args(str(out), hub_dataset, "--trainer.max_epochs=1")])
    assert tuned.trainer.global_step > 0


def test_attention_dropout_is_set_under_each_architectures_own_name(tiny_encoders):
    from bert_imdb.models.classifier import SentimentClassifier

    for name, attribute in (("distilbert", "attention_dropout"), ("roberta", "attention_probs_dropout_prob")):
        config = SentimentClassifier(tiny_encoders[name], attention_dropout=0.25).model.config
        assert getattr(config, attribute) == 0.25, name


def bad_folder(kind: str, tiny_model: str, tiny_encoders: dict, tmp_path: Path) -> str:
    folder = tmp_path / kind
    if kind == "gpt2":
        GPT2Model(GPT2Config(vocab_size=60, n_embd=32, n_layer=1, n_head=2, n_positions=128)).save_pretrained(
            folder
        )
        BertTokenizerFast.from_pretrained(tiny_model).save_pretrained(folder)
    elif kind == "no tokenizer":
        AutoModel.from_pretrained(tiny_encoders["roberta"]).save_pretrained(folder)
    elif kind == "larger vocabulary":
        AutoModel.from_pretrained(tiny_model).save_pretrained(folder)
        tokenizer = BertTokenizerFast.from_pretrained(tiny_model)
        tokenizer.add_tokens([f"word{i}" for i in range(10)])
        tokenizer.save_pretrained(folder)
    else:  # a config.json that is not JSON
        AutoModel.from_pretrained(tiny_model).save_pretrained(folder)
        BertTokenizerFast.from_pretrained(tiny_model).save_pretrained(folder)
        (folder / "config.json").write_text('{"model_type": "bert",')
    return str(folder)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("gpt2", "is a gpt2 model, not an encoder"),
        ("no tokenizer", "has no tokenizer files"),
        ("larger vocabulary", "tokens, its model's embeddings"),
        ("bad config", "config.json is not valid JSON"),
    ],
)
def test_models_that_cannot_be_fine_tuned_are_refused_in_one_line(
    tiny_model, tiny_encoders, hub_dataset, workdir, tmp_path, kind, message
):
    folder = bad_folder(kind, tiny_model, tiny_encoders, tmp_path)
    with pytest.raises(SystemExit) as refused:
        cli_main(["fit", *tiny_args(folder, hub_dataset)])
    text = str(refused.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text, text
    assert not (workdir / "lightning_logs").exists()
