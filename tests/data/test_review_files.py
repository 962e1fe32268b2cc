import gzip
import json

import pytest
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from bert_imdb.data.review_files import ReviewStream, iter_reviews, scan_reviews
from bert_imdb.errors import UserError


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


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_reviews_with_nothing_to_read_are_skipped_and_counted_in_every_format(tmp_path, suffix):
    # A line of NUL bytes, one of other control characters, one of white space: none holds a review.
    blanks = ["\x00" * 12, "\x07\x1b\u200b", " \t "]
    texts = ["good film", *blanks, "bad film"]
    path = tmp_path / f"r{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n", encoding="utf-8")
    else:
        path.write_text("text\n" + "".join(f'"{t}"\n' for t in texts), encoding="utf-8")
    assert scan_reviews(str(path)) == (2, 3)
    assert [row["text"] for row in iter_reviews(str(path))] == ["good film", "bad film"]


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_gzip_compressed_files_are_read_as_their_format(tmp_path, suffix):
    body = {
        ".txt": "good film\n\nbad film\n",
        ".csv": "id,text\na,good film\nb,bad film\n",
        ".jsonl": '{"id": "a", "text": "good film"}\n{"id": "b", "text": "bad film"}\n',
    }[suffix]
    path = tmp_path / f"reviews{suffix}.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(body)
    assert scan_reviews(str(path))[0] == 2
    assert [row["text"] for row in iter_reviews(str(path))] == ["good film", "bad film"]


# Named by file: a test id made of the bytes would differ between xdist workers wherever the bytes do, and
# pytest-xdist then refuses the whole run ("Different tests were collected").
BAD_PREDICT_FILES = [
    ("missing.txt", None, "does not exist"),
    ("not-gzip.txt.gz", b"good film\n", "cannot be read"),
    (
        "cut.jsonl.gz",
        gzip.compress(b"".join(b'{"text": "film %d"}\n' % i for i in range(20000)), mtime=0)[:20000],
        "cannot be read to its end",
    ),
    ("empty.txt", b"  \n\n", "is empty"),
    ("latin1.txt", "café terrible".encode("latin-1"), "is not UTF-8"),
    ("binary.txt", b"\x00\x01\x02 PNG", "is binary"),
    ("no_text.csv", b"review,id\ngood,1\n", "needs a text column"),
    ("bad.jsonl", b'{"text": "good"}\n{"text": oops}\n', "line 2, is not valid JSON"),
    ("reviews.pdf", b"%PDF", "not .txt, .csv or .jsonl"),
]


@pytest.mark.parametrize(
    ("name", "content", "message"), BAD_PREDICT_FILES, ids=[name for name, _, _ in BAD_PREDICT_FILES]
)
def test_bad_predict_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        scan_reviews(str(path))


@pytest.mark.parametrize(
    ("processes", "workers", "reviews", "batch_size"),
    [(2, 2, 20, 16), (2, 0, 5, 16), (3, 2, 2, 4), (2, 3, 37, 4), (1, 2, 33, 8), (4, 1, 64, 8)],
)
def test_review_stream_deals_every_review_to_one_rank_in_order(
    tiny_model, tmp_path, processes, workers, reviews, batch_size
):
    path = tmp_path / "reviews.txt"
    path.write_text("".join(f"review {i}\n" for i in range(reviews)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    seen = []
    for rank in range(processes):
        stream = ReviewStream(
            str(path), reviews, tokenizer, 32, batch_size, rank=rank, world_size=processes, workers=workers
        )
        loader = DataLoader(
            stream,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=lambda rows: [r["index"] for r in rows],
        )
        batches = list(loader)
        # Lightning stops a rank after len(loader) batches: it must be what the rank holds.
        assert len(loader) == len(batches), f"rank {rank}"
        mine = [index for batch in batches for index in batch]
        assert mine == sorted(mine), f"rank {rank} is out of file order"
        seen += mine
    assert sorted(seen) == list(range(reviews))


def test_every_line_end_separates_reviews(tmp_path):
    """Old Mac files end lines with a carriage return alone: 3 reviews in gave 1 prediction out."""
    for ends in ("\n", "\r\n", "\r"):
        reviews = tmp_path / f"reviews{len(ends)}{ends == chr(13)}.txt"
        reviews.write_bytes(ends.join(["a good film", "a bad film", "", "fine"]).encode() + ends.encode())
        assert scan_reviews(str(reviews)) == (3, 1)
        assert [row["text"] for row in iter_reviews(str(reviews))] == ["a good film", "a bad film", "fine"]


def test_empty_texts_are_skipped_and_counted_in_every_format(tmp_path):
    """A .txt skipped its empty lines while an empty JSONL or CSV text got a prediction."""
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in ["good", "", "  \t", "bad"]) + "\n")
    csv_file = tmp_path / "r.csv"
    csv_file.write_text('id,text\na,good\nb,\nc," "\nd,bad\n')
    for path, ids in ((jsonl, ["1", "4"]), (csv_file, ["a", "d"])):
        assert scan_reviews(str(path)) == (2, 2)
        assert [row["id"] for row in iter_reviews(str(path))] == ids


def test_a_csv_review_longer_than_pythons_field_limit_is_read(tmp_path):
    long = "a very long review " * 20_000  # 380,000 characters; csv refuses fields over 131,072 by default
    reviews = tmp_path / "long.csv"
    reviews.write_text(f'id,text\n1,"{long}"\n2,short\n')
    assert [len(row["text"]) for row in iter_reviews(str(reviews))] == [len(long), 5]
