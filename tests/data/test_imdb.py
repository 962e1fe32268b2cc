from pathlib import Path

import pytest
from conftest import IMDB_FEATURES, make_rows, write_hub_layout
from datasets import ClassLabel, Dataset, Features, Value

from bert_imdb.data.imdb import load_imdb
from bert_imdb.errors import UserError


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


def test_two_folders_of_the_same_name_and_readme_load_their_own_reviews(tmp_path):
    small, large = (
        write_hub_layout(tmp_path / side / "imdb", n_train=n) for side, n in (("a", 40), ("b", 60))
    )
    assert len(load_imdb(str(small))["train"]) == 40
    assert len(load_imdb(str(large))["train"]) == 60  # not the cached 40 of the first


@pytest.mark.parametrize(
    "names", [["pos", "neg"], ["Negative", "Positive"], ["positive", "negative"]], ids=lambda n: "-".join(n)
)
def test_class_label_names_are_mapped_by_name_not_by_id(tmp_path, names):
    """ClassLabel(names=["pos", "neg"]) gives positive reviews the id 0: relabelled by id, every label flipped."""
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    positive = next(i for i, name in enumerate(names) if name.lower().startswith("pos"))
    rows = [
        {"text": f"{'great' if i % 2 else 'awful'} film {i}", "label": positive if i % 2 else 1 - positive}
        for i in range(10)
    ]
    for split in ("train", "test"):
        Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    data = load_imdb(str(tmp_path))
    assert data["train"].features["label"].names == ["neg", "pos"]
    assert {row["text"].split()[0]: row["label"] for row in data["train"]} == {"awful": 0, "great": 1}


def test_class_label_names_that_say_nothing_of_sentiment_are_refused(tmp_path):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["good", "bad"])})
    for split in ("train", "test"):
        Dataset.from_list(make_rows(4, 0), features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    with pytest.raises(UserError, match="names its labels good, bad: name them neg and pos"):
        load_imdb(str(tmp_path))


def test_a_training_set_of_one_label_is_refused(tmp_path, hub_dataset):
    from bert_imdb.data.imdb import imdb_subsets

    # Only positive reviews in train: a model trained on them says "pos" to everything, silently.
    folder = tmp_path / "all-positive"
    folder.mkdir()
    for split in ("train", "test"):
        rows = [{**row, "label": 1} for row in make_rows(20, 0)]
        Dataset.from_list(rows, features=IMDB_FEATURES).to_json(str(folder / f"{split}.jsonl"))
    with pytest.raises(
        UserError, match=r"the 18 training reviews are all pos: a classifier needs both labels"
    ):
        imdb_subsets(str(folder), seed=0)
    # Both labels in the data, but a limit of one review leaves one: the message says to raise it.
    with pytest.raises(
        UserError, match=r"the 1 training reviews are all (pos|neg): .*raise data.max_train_samples"
    ):
        imdb_subsets(hub_dataset, seed=0, max_train=1)


def _write_jsonl(folder: Path, train: list[dict], test: list[dict] | None = None) -> str:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test if test is not None else train)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(folder)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # One file of numbers beside one of text: datasets fails while generating the splits.
        ("numbers in train, text in test", r"cannot load dataset .*Failed to parse string"),
        ("a number among the texts", r"text column of the train split .* is Json, not strings"),
        ("a list among the texts", r"text column of the train split .* is Json, not strings"),
        (
            "a missing text in train",
            r"train split .* has 1 review\(s\) with no text value \(the first is row 3\)",
        ),
        (
            "a missing text in test",
            r"test split .* has 1 review\(s\) with no text value \(the first is row 3\)",
        ),
        ("numbers only", r"text column of the train split .* is int64, not strings"),
    ],
)
def test_texts_that_are_not_strings_are_named(tmp_path, bad, message):
    """Each was a traceback (TypeError: TextEncodeInput must be ..., DatasetGenerationError) or, for a list,
    silent training on its JSON text."""
    rows = make_rows(10, 0)
    train = test = rows
    odd = {
        "a number among the texts": 5,
        "a list among the texts": ["a", "b"],
        "a missing text in train": None,
    }
    if bad in odd:
        train = [*rows[:3], {"text": odd[bad], "label": 0}, *rows[3:]]
    elif bad == "a missing text in test":
        test = [*rows[:3], {"text": None, "label": 0}, *rows[3:]]
    elif bad == "numbers in train, text in test":
        train = [{"text": i, "label": i % 2} for i in range(10)]
    elif bad == "numbers only":
        train = test = [{"text": i, "label": i % 2} for i in range(10)]
    folder = _write_jsonl(tmp_path / "data", train, test)
    with pytest.raises(UserError, match=message):
        load_imdb(folder)


def test_empty_reviews_are_skipped_with_a_warning(tmp_path):
    """The rule of predict files: a review of no words (empty or whitespace) is skipped and counted."""
    rows = make_rows(10, 0)
    blank = [{"text": "", "label": 0}, {"text": " \n\t", "label": 1}]
    folder = _write_jsonl(tmp_path / "data", [*rows[:2], *blank, *rows[2:]], rows)
    with pytest.warns(
        UserWarning, match=r"train split .* has 2 empty review\(s\) \(the first is row 2\): skipped"
    ):
        data = load_imdb(folder)
    assert data["train"]["text"] == [row["text"] for row in rows]
    assert len(data["test"]) == 10


@pytest.mark.parametrize(
    ("labels", "val_fraction", "message"),
    [
        # One negative review: the stratified split needs two of each label (a traceback before).
        ([1] * 19 + [0], 0.1, "least populated class"),
        # A held-out part of one review cannot hold both labels.
        ([0, 1] * 10, 0.05, "should be greater or equal to the number of classes"),
    ],
    ids=["one review of a label", "held-out part smaller than the labels"],
)
def test_a_validation_split_that_cannot_hold_both_labels_is_named(tmp_path, labels, val_fraction, message):
    from bert_imdb.data.imdb import imdb_subsets

    rows = [{"text": f"review {i}", "label": label} for i, label in enumerate(labels)]
    folder = _write_jsonl(tmp_path / "data", rows)
    with pytest.raises(
        UserError, match=rf"cannot hold out data.val_fraction={val_fraction} of the 20 .*{message}"
    ):
        imdb_subsets(folder, seed=0, val_fraction=val_fraction)
