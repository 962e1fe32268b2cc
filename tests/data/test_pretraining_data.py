import random
import re

import pytest
import torch
from conftest import training_batches

from bert_imdb.data.imdb import load_imdb_text
from bert_imdb.data.pretraining import IMDbPretrainingDataModule, sentence_pairs
from bert_imdb.errors import UserError


def datamodule(model: str, dataset: str, **kwargs) -> IMDbPretrainingDataModule:
    settings = {"max_length": 32, "batch_size": 16, "val_reviews": 50, **kwargs}
    return IMDbPretrainingDataModule(dataset=dataset, tokenizer_name_or_path=model, **settings)


def originals(batch: dict) -> torch.Tensor:
    """The token ids before masking: masked positions keep theirs in the labels."""
    return torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])


def test_text_comes_from_train_and_unsupervised_never_test(text_dataset):
    texts = load_imdb_text(text_dataset)["text"]
    assert len(texts) == 400
    assert not any("excellent" in text for text in texts)


def test_masking_selects_15_percent_of_ordinary_tokens_80_10_10(tiny_model, text_dataset):
    dm = datamodule(tiny_model, text_dataset, line_by_line=True)
    dm.setup("fit")
    torch.manual_seed(0)
    special = torch.tensor(dm.tokenizer.all_special_ids)
    ordinary = selected = as_mask = unchanged = 0
    for batch in training_batches(dm):
        tokens, chosen = originals(batch), batch["labels"] != -100
        is_special = torch.isin(tokens, special)
        assert (batch["attention_mask"] == 0).any(), "line-by-line batches should need padding"
        assert not (chosen & is_special).any(), "a special or padding token was selected"
        assert (batch["input_ids"][~chosen] == tokens[~chosen]).all(), "an unselected token changed"
        ordinary += int((~is_special).sum())
        selected += int(chosen.sum())
        as_mask += int((batch["input_ids"][chosen] == dm.tokenizer.mask_token_id).sum())
        unchanged += int((batch["input_ids"][chosen] == tokens[chosen]).sum())
    assert ordinary > 5000
    assert selected / ordinary == pytest.approx(0.15, abs=0.02)
    assert as_mask / selected == pytest.approx(0.8, abs=0.05)
    # A random replacement can draw the original token, so "unchanged" is a little over 10%.
    assert unchanged / selected == pytest.approx(0.1, abs=0.04)


def test_whole_word_masking_masks_all_pieces_of_a_word(tiny_model, text_dataset):
    dm = datamodule(tiny_model, text_dataset, whole_word_mask=True)
    dm.setup("fit")
    torch.manual_seed(0)
    pieces_masked = 0
    for batch in training_batches(dm):
        chosen = batch["labels"] != -100
        for row, tokens in enumerate(originals(batch).tolist()):
            for i, token in enumerate(dm.tokenizer.convert_ids_to_tokens(tokens)):
                if token.startswith("##") and i > 0:
                    assert chosen[row, i] == chosen[row, i - 1], f"{token} masked apart from its word"
                    pieces_masked += int(chosen[row, i])
    assert pieces_masked > 20, "no multi-piece word was masked: the test proves nothing"


def test_blocks_have_exactly_max_length_tokens(tiny_model, text_dataset):
    dm = datamodule(tiny_model, text_dataset, max_length=24)
    dm.setup("fit")
    for split in ("train", "val"):
        assert {len(ids) for ids in dm.datasets[split]["input_ids"]} == {24}
    # Concatenated, not one review per block: reviews are 10 to 60 tokens, and blocks cross their borders.
    assert any(ids.count(dm.tokenizer.cls_token_id) > 1 for ids in dm.datasets["train"]["input_ids"])
    assert next(training_batches(dm))["input_ids"].shape == (16, 24)


def test_validation_masks_are_drawn_once_and_the_same_in_every_run(tiny_model, text_dataset):
    first, second = datamodule(tiny_model, text_dataset), datamodule(tiny_model, text_dataset)
    first.setup("fit")
    second.setup("validate")
    batches = [next(iter(dm.val_dataloader())) for dm in (first, first, second)]
    for batch in batches[1:]:
        assert torch.equal(batch["input_ids"], batches[0]["input_ids"])
        assert torch.equal(batch["labels"], batches[0]["labels"])
    assert (batches[0]["labels"] != -100).any()


END = 7


def synthetic_review(r: int, rng: random.Random) -> list[int]:
    """Token ids that say where they come from: review r, sentence s, word w is r*1000 + s*10 + w."""
    ids = []
    for s in range(rng.randint(1, 6)):
        ids += [r * 1000 + s * 10 + w for w in range(1, rng.randint(2, 9))] + [END]
    return ids


def test_nsp_pairs_are_half_true_half_random_with_segment_ids():
    rng = random.Random(0)
    batch = {"input_ids": [synthetic_review(r, rng) for r in range(1, 301)]}
    pairs = sentence_pairs(batch, [0], max_length=40, cls_id=1, sep_id=2, end_ids=[END], seed=0)
    labels = pairs["next_sentence_label"]
    assert len(labels) > 200
    assert sum(labels) / len(labels) == pytest.approx(0.5, abs=0.07)
    for ids, segments, special, label in zip(
        pairs["input_ids"], pairs["token_type_ids"], pairs["special_tokens_mask"], labels, strict=True
    ):
        assert len(ids) <= 40 and ids[0] == 1 and ids[-1] == 2
        sep = ids.index(2)
        a, b = ids[1:sep], ids[sep + 1 : -1]
        assert segments == [0] * (sep + 1) + [1] * (len(b) + 1)
        assert special == [1] + [0] * len(a) + [1] + [0] * len(b) + [1]
        words_a, words_b = [t for t in a if t != END], [t for t in b if t != END]
        a_review, b_review = words_a[-1] // 1000, words_b[0] // 1000
        if label == 0:  # B is what follows A in the same review
            assert b_review == a_review and words_b[0] // 10 == words_a[-1] // 10 + 1
        else:
            assert b_review != a_review


def test_nsp_batches_carry_segments_and_labels(tiny_pretraining_model, text_dataset):
    dm = datamodule(tiny_pretraining_model, text_dataset, nsp=True, max_length=48)
    dm.setup("fit")
    for batch in (next(training_batches(dm)), next(iter(dm.val_dataloader()))):
        assert set(batch["next_sentence_label"].tolist()) == {0, 1}
        assert (batch["token_type_ids"] == 1).any()
        assert (batch["labels"] != -100).any()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mlm_probability": 0.0}, "data.mlm_probability=0.0 must lie between 0 and 1"),
        ({"mlm_probability": 1.5}, "data.mlm_probability=1.5 must lie between 0 and 1"),
        ({"max_length": 512}, "data.max_length=512 is above the 128 tokens"),
        ({"nsp": True, "line_by_line": True}, "line_by_line does not apply to NSP"),
        ({"val_reviews": 1, "max_length": 100}, "no val text left: 1 reviews make no 100-token blocks"),
        ({"val_reviews": 400}, "400 non-empty reviews, not more than data.val_reviews=400"),
    ],
)
def test_bad_settings_are_named(tiny_model, text_dataset, settings, message):
    with pytest.raises(UserError, match=re.escape(message)):
        datamodule(tiny_model, text_dataset, **settings).setup("fit")


def test_training_masks_come_from_the_main_process_whatever_the_workers(tiny_model, text_dataset):
    """Masks drawn in DataLoader workers come from their random states, which no checkpoint holds: a run
    resumed mid-epoch with workers masked differently from the run it continues. Drawn in the main process,
    whose generator checkpoints keep, they are the same with 0 or 2 workers."""
    masks = {}
    for workers in (0, 2):
        dm = datamodule(tiny_model, text_dataset, num_workers=workers)
        dm.setup("fit")
        torch.manual_seed(0)
        masks[workers] = [batch["labels"] for batch in training_batches(dm)]
    assert len(masks[0]) > 2
    assert all(torch.equal(a, b) for a, b in zip(masks[0], masks[2], strict=True))


def test_whole_word_masking_with_a_slow_tokenizer_is_refused_in_one_line(
    tiny_model, text_dataset, tmp_path, monkeypatch
):
    # A slow tokenizer gives no character offsets: masking would fail on the first batch, deep in it.
    from transformers import AutoTokenizer
    from transformers.models.bert import BertTokenizerLegacy  # transformers 5's Python (slow) tokenizer

    words = AutoTokenizer.from_pretrained(tiny_model).get_vocab()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(sorted(words, key=words.get)) + "\n")
    monkeypatch.setattr(
        "bert_imdb.data.pretraining.load_tokenizer", lambda name: BertTokenizerLegacy(str(vocab))
    )
    with pytest.raises(
        UserError, match=r"data.whole_word_mask needs a fast tokenizer .*: add its tokenizer.json"
    ):
        datamodule(tiny_model, text_dataset, whole_word_mask=True)
    assert datamodule(tiny_model, text_dataset).tokenizer.is_fast is False  # without it, it is fine
