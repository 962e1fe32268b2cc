import os
import re
from pathlib import Path

import pytest
import torch
from conftest import write_hub_layout

from bert_imdb.data.sentiment import IMDbDataModule
from bert_imdb.errors import UserError


def datamodule(model: str, dataset: str, **kwargs) -> IMDbDataModule:
    return IMDbDataModule(dataset=dataset, tokenizer_name_or_path=model, **{"max_length": 32, **kwargs})


def cache_files() -> set[Path]:
    """The datasets cache files (tokenized splits and shuffle indices) written so far."""
    return set(Path(os.environ["HF_DATASETS_CACHE"]).rglob("cache-*.arrow"))


def test_setup_reads_the_cache_that_prepare_data_filled(tiny_model, tmp_path):
    # A dataset of its own: the session's is tokenized already, by whichever test came first.
    hub_dataset = str(write_hub_layout(tmp_path / "imdb"))
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
        # The real lengths ride along, read on the host before padding: counted without the device.
        assert batch["lengths"] == batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 1
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "lengths"}


def test_batches_can_be_padded_to_a_multiple(tiny_model, hub_dataset):
    dm = datamodule(tiny_model, hub_dataset, batch_size=4, pad_to_multiple_of=8)
    dm.setup("fit")
    widths = {batch["input_ids"].shape[1] for batch in dm.train_dataloader()}
    assert widths and all(width % 8 == 0 for width in widths)


def test_evaluation_batches_are_small_on_a_cpu_and_large_on_an_accelerator(
    tiny_model, hub_dataset, monkeypatch
):
    dm = datamodule(tiny_model, hub_dataset, max_val_samples=20)
    dm.setup("fit")
    assert [len(batch["labels"]) for batch in dm.val_dataloader()] == [8, 8, 4]
    monkeypatch.setattr(dm, "_device", lambda: torch.device("cuda"))
    assert dm.eval_batch() == 64
    assert datamodule(tiny_model, hub_dataset, eval_batch_size=5).eval_batch() == 5


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"truncation": "middle"}, "data.truncation='middle' is unknown: use one of head, tail, head+tail"),
        ({"pad_to_multiple_of": 0}, "data.pad_to_multiple_of=0 must be at least 1"),
        ({"batch_size": 0}, "data.batch_size=0 is below 1: set it to 1 or more"),
        ({"eval_batch_size": -2}, "data.eval_batch_size=-2 is below 1"),
        (
            {"max_train_samples": 0},
            "data.max_train_samples=0 is below 1: set it to 1 or more, or leave it unset",
        ),
        ({"max_test_samples": -5}, "data.max_test_samples=-5 is below 1"),
        ({"num_proc": 0}, "data.num_proc=0 is below 1"),
        ({"test_min_tokens": 0}, "data.test_min_tokens=0 is below 1"),
        ({"num_workers": -1}, "data.num_workers=-1 is below 0"),
        ({"max_length": 0}, "data.max_length=0 is too small: use at least 8"),
    ],
)
def test_bad_settings_are_named_before_anything_loads(tiny_model, hub_dataset, settings, message):
    with pytest.raises(UserError, match=re.escape(message)):
        datamodule(tiny_model, hub_dataset, **settings)


def test_test_min_tokens_tests_only_the_reviews_truncation_cuts(tiny_model, hub_dataset):
    everything = datamodule(tiny_model, hub_dataset)
    everything.setup("test")
    lengths = everything.datasets["test"]["review_tokens"]
    cut = sum(length > 32 for length in lengths)
    assert 0 < cut < len(lengths), "the fixture's test split needs reviews on both sides of max_length"
    long_only = datamodule(tiny_model, hub_dataset, test_min_tokens=33)
    long_only.setup("test")
    kept = long_only.datasets["test"]
    assert len(kept) == cut and min(kept["review_tokens"]) > 32
    # The same reviews, tokenized the same way, as in the whole test split.
    test = everything.datasets["test"]
    whole = dict(zip(test["text"], test["input_ids"], strict=True))
    assert all(whole[text] == ids for text, ids in zip(kept["text"], kept["input_ids"], strict=True))


def test_test_min_tokens_that_leaves_no_review_says_so(tiny_model, hub_dataset):
    data = datamodule(tiny_model, hub_dataset, test_min_tokens=10**6)
    with pytest.raises(
        UserError,
        match=r"data.test_min_tokens=1000000 leaves no test review \(the longest has \d+ tokens\): lower it",
    ):
        data.setup("test")
