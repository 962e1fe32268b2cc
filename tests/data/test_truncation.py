from transformers import AutoTokenizer

from bert_imdb.data.truncation import tokenize


def test_truncation_keeps_the_head_the_tail_or_both(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    long_review = " ".join(["great"] * 10 + ["the", "movie"] * 100 + ["awful"] * 10)
    short_review = "a wonderful film"
    full = tokenizer(long_review, add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    # 32 tokens: 30 of the review between [CLS] and [SEP]; head+tail keeps 32 // 4 = 8 and the last 22.
    expected = {"head": full[:30], "tail": full[-30:], "head+tail": full[:8] + full[-22:]}
    for truncation, kept in expected.items():
        out = tokenize({"text": [long_review, short_review]}, tokenizer, 32, truncation)
        assert out["input_ids"][0] == [cls, *kept, sep]
        assert out["attention_mask"][0] == [1] * 32
        assert out["input_ids"][1] == tokenizer(short_review)["input_ids"]


def test_head_plus_tail_keeps_sun_et_al_128_and_382_at_512(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    words = ["great", "awful", "the", "movie", "plot"]
    review = " ".join(words[i % 5] for i in range(700))
    full = tokenizer(review, add_special_tokens=False)["input_ids"]
    for max_length, head, tail in ((512, 128, 382), (256, 64, 190)):
        [ids] = tokenize({"text": [review]}, tokenizer, max_length, "head+tail")["input_ids"]
        assert ids[1:-1] == full[:head] + full[-tail:]
