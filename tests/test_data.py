import json
import os
import re
from pathlib import Path

import pytest
from conftest import IMDB_FEATURES, make_rows
from datasets import Dataset
from transformers import AutoTokenizer

from bert_imdb.data import IMDbDataModule, iter_reviews, load_imdb, scan_reviews, tokenize
from bert_imdb.errors import UserError


def datamodule(model: str, dataset: str, **kwargs) -> IMDbDataModule:
    return IMDbDataModule(dataset=dataset, tokenizer_name_or_path=model, max_length=32, **kwargs)


def cache_files() -> set[Path]:
    """The datasets cache files (tokenized splits and shuffle indices) written so far."""
    return set(Path(os.environ["HF_DATASETS_CACHE"]).rglob("cache-*.arrow"))


def test_setup_reads_the_cache_that_prepare_data_filled(tiny_model, hub_dataset):
    first = datamodule(tiny_model, hub_dataset)
    first.prepare_data()
    written = cache_files()
    assert written, "prepare_data wrote no tokenized cache"
    # The same DataModule, whose tokenizer has now been used, and a fresh one (a new run, or another
    # rank) with a fresh tokenizer must both hit that cache.
    first.setup("fit")
    second = datamodule(tiny_model, hub_dataset)
    second.setup("fit")
    second.setup("test")
    after = cache_files()
    assert after == written, f"setup tokenized again: new cache files {after - written}"
    for split in ("train", "val", "test"):
        used = {Path(f["filename"]) for f in second.datasets[split].cache_files}
        assert used <= written, f"{split} was not loaded from the prepare_data cache"


def test_sample_limits_take_the_seeded_shuffle(tiny_model, hub_dataset):
    limits = {"max_train_samples": 40, "max_val_samples": 10, "max_test_samples": 20}
    a = datamodule(tiny_model, hub_dataset, seed=1, **limits)
    b = datamodule(tiny_model, hub_dataset, seed=1, **limits)
    c = datamodule(tiny_model, hub_dataset, seed=2, **limits)
    for dm in (a, b, c):
        dm.setup("fit")
        dm.setup("test")
    assert [len(a.datasets[s]) for s in ("train", "val", "test")] == [40, 10, 20]
    assert a.datasets["train"]["input_ids"] == b.datasets["train"]["input_ids"]
    assert a.datasets["train"]["input_ids"] != c.datasets["train"]["input_ids"]
    # Validation is carved from train: no review is in both.
    train = {tuple(ids) for ids in a.datasets["train"]["input_ids"]}
    assert not train & {tuple(ids) for ids in a.datasets["val"]["input_ids"]}


def test_batches_are_padded_to_their_longest_review_only(tiny_model, hub_dataset):
    dm = datamodule(tiny_model, hub_dataset, batch_size=4)
    dm.setup("fit")
    lengths = []
    for batch in dm.train_dataloader():
        longest = int(batch["attention_mask"].sum(1).max())
        assert batch["input_ids"].shape[1] == longest
        lengths.append(longest)
    assert len(set(lengths)) > 1
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}


def test_acl_imdb_folder_loads_with_its_labels(acl_imdb):
    data = load_imdb(acl_imdb)
    assert {split: len(data[split]) for split in data} == {"train": 60, "test": 20}
    assert data["train"].features["label"].names == ["neg", "pos"]
    folder = Path(acl_imdb) / "train" / "pos"
    texts = {f.read_text() for f in folder.glob("*.txt")}
    assert {row["text"] for row in data["train"] if row["label"] == 1} == texts
    # Also found when given the folder that contains aclImdb/.
    assert len(load_imdb(str(Path(acl_imdb).parent))["test"]) == 20


def test_string_labels_neg_pos_are_accepted(tmp_path):
    for split in ("train", "test"):
        rows = [{"text": r["text"], "label": ["neg", "pos"][r["label"]]} for r in make_rows(10, 0)]
        Dataset.from_list(rows).to_json(str(tmp_path / f"{split}.jsonl"))
    data = load_imdb(str(tmp_path))
    assert data["train"].features["label"].names == ["neg", "pos"]
    assert data["train"]["label"] == [r["label"] for r in make_rows(10, 0)]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"review": "good", "label": 1}], "has no text column"),
        ([{"text": "good", "label": 3}, {"text": "bad", "label": 0}], "labels must be 0/1 or neg/pos"),
        ([{"text": "good", "label": "great"}], "labels must be 0/1 or neg/pos"),
    ],
)
def test_bad_columns_and_labels_are_named(tmp_path, rows, message):
    for split in ("train", "test"):
        Dataset.from_list(rows).to_json(str(tmp_path / f"{split}.jsonl"))
    with pytest.raises(UserError, match=message):
        load_imdb(str(tmp_path))


def test_missing_split_is_named(tmp_path):
    Dataset.from_list(make_rows(10, 0), features=IMDB_FEATURES).to_json(str(tmp_path / "train.jsonl"))
    with pytest.raises(UserError, match="has no test split"):
        load_imdb(str(tmp_path))


def test_empty_split_after_limits_is_named(tiny_model, hub_dataset):
    dm = datamodule(tiny_model, hub_dataset, max_train_samples=0)
    with pytest.raises(UserError, match=r"train split is empty after data\.max_train_samples=0"):
        dm.setup("fit")


def test_read_reviews_keeps_order_and_ids(tmp_path):
    txt = tmp_path / "r.txt"
    txt.write_text("first review\n\nsecond review\n", encoding="utf-8")
    assert scan_reviews(str(txt)) == (2, 1)  # two reviews, one empty line skipped
    assert list(iter_reviews(str(txt))) == [
        {"id": "1", "text": "first review"},
        {"id": "3", "text": "second review"},
    ]
    csv_file = tmp_path / "r.csv"
    csv_file.write_text('id,text\na7,"good, really"\nb2,bad\n', encoding="utf-8")
    assert list(iter_reviews(str(csv_file))) == [
        {"id": "a7", "text": "good, really"},
        {"id": "b2", "text": "bad"},
    ]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in ["x", "y", "z"]), encoding="utf-8")
    assert [r["id"] for r in iter_reviews(str(jsonl))] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "does not exist"),
        ("empty.txt", b"  \n\n", "is empty"),
        ("latin1.txt", "café terrible".encode("latin-1"), "is not UTF-8"),
        ("binary.txt", b"\x00\x01\x02 PNG", "is binary"),
        ("no_text.csv", b"review,id\ngood,1\n", "needs a text column"),
        ("bad.jsonl", b'{"text": "good"}\n{"text": oops}\n', "line 2, is not valid JSON"),
        ("reviews.pdf", b"%PDF", "not .txt, .csv or .jsonl"),
    ],
)
def test_bad_predict_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        scan_reviews(str(path))


def test_truncation_keeps_the_head_the_tail_or_both(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    long_review = " ".join(["great"] * 10 + ["the", "movie"] * 100 + ["awful"] * 10)
    short_review = "a wonderful film"
    full = tokenizer(long_review, add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    expected = {"head": full[:30], "tail": full[-30:], "head+tail": full[:7] + full[-23:]}  # 32 - 2 special
    for truncation, kept in expected.items():
        out = tokenize({"text": [long_review, short_review]}, tokenizer, 32, truncation)
        assert out["input_ids"][0] == [cls, *kept, sep]
        assert out["attention_mask"][0] == [1] * 32
        assert out["input_ids"][1] == tokenizer(short_review)["input_ids"]


def test_batches_can_be_padded_to_a_multiple(tiny_model, hub_dataset):
    dm = datamodule(tiny_model, hub_dataset, batch_size=4, pad_to_multiple_of=8)
    dm.setup("fit")
    widths = {batch["input_ids"].shape[1] for batch in dm.train_dataloader()}
    assert widths and all(width % 8 == 0 for width in widths)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"truncation": "middle"}, "data.truncation='middle' is unknown: use one of head, tail, head+tail"),
        ({"pad_to_multiple_of": 0}, "data.pad_to_multiple_of=0 must be at least 1"),
    ],
)
def test_bad_speed_settings_are_named(tiny_model, hub_dataset, settings, message):
    with pytest.raises(UserError, match=re.escape(message)):
        datamodule(tiny_model, hub_dataset, **settings)
