"""Reading the reviews `predict` is given: .txt, .csv or .jsonl, checked from end to end first, then
streamed and dealt out to processes and DataLoader workers."""

import codecs
import csv
import functools
import gzip
import json
import unicodedata
from pathlib import Path

from torch.utils.data import IterableDataset, get_worker_info
from transformers import PreTrainedTokenizerBase

from bert_imdb.data.truncation import tokenize
from bert_imdb.errors import UserError

PREDICT_SUFFIXES = (".txt", ".csv", ".jsonl")


def file_format(file: Path) -> str:
    """The format of a predict file by its name: .txt, .csv or .jsonl, also gzip-compressed (.txt.gz)."""
    suffixes = file.suffixes[-2:]
    return suffixes[0] if len(suffixes) == 2 and suffixes[1] == ".gz" else file.suffix


def _open(file: Path):
    return gzip.open(file, "rb") if file.suffix == ".gz" else file.open("rb")


def has_text(text: str) -> bool:
    """Whether a review holds anything to read once control characters (NUL bytes, say) and white space are
    set aside: one that does not is skipped and counted, as an empty line is."""
    return any(
        not character.isspace() and not unicodedata.category(character).startswith("C") for character in text
    )


def _raw_lines(handle):
    """The lines of a binary file, each ending in "\n", whichever line ends it uses: "\n", "\r\n", or
    "\r" alone (old Mac files, which read as one line otherwise)."""
    for chunk in handle:
        *lines, last = chunk.replace(b"\r\n", b"\n").split(b"\r")
        yield from (line + b"\n" for line in lines)
        if last:  # empty after a final "\r"
            yield last


def _lines(file: Path, path: str):
    """The lines of a file as text, decoded one by one so that a non-UTF-8 byte is reported with its line."""
    with _open(file) as handle:
        for n, raw in enumerate(_raw_lines(handle), 1):
            try:
                # A byte-order mark (Excel writes one) is no part of the first column's name.
                yield (raw.removeprefix(codecs.BOM_UTF8) if n == 1 else raw).decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(
                    f"predict file {path}, line {n}, is not UTF-8 text (byte {err.start + 1}): re-save it as UTF-8"
                ) from err


def _records(file: Path, path: str):
    """(record number, record) of a .txt, .csv or .jsonl file of reviews, read line by line; None for an
    empty line. Raises a UserError that names the line of the first problem."""
    if file_format(file) == ".csv":
        yield from _csv_records(file, path)
        return
    for line, content in enumerate(_lines(file, path), 1):
        content = content.rstrip("\r\n")
        if not has_text(content):
            yield line, None
        elif file_format(file) == ".txt":
            yield line, {"text": content}
        else:
            try:
                record = json.loads(content)
            except json.JSONDecodeError as err:
                raise UserError(
                    f"predict file {path}, line {line}, is not valid JSON ({err.msg}): fix that line"
                ) from err
            if not isinstance(record, dict):
                raise UserError(
                    f'predict file {path}, line {line}, is not a JSON object: write {{"text": ...}}'
                )
            yield line, None if _is_blank(record) else record


def _is_blank(record: dict) -> bool:
    """A text with nothing to read: skipped and counted in every format, as an empty line of a .txt is."""
    return isinstance(record.get("text"), str) and not has_text(record["text"])


def _csv_records(file: Path, path: str):
    """(record number, record) of a .csv, parsed strictly: a quote left open would otherwise swallow every
    line after it into one review, silently."""
    # Python's csv refuses fields over 128 KiB by default; a review in JSONL has no such limit, nor here.
    csv.field_size_limit(2**31 - 1)
    reader = csv.DictReader(_lines(file, path), strict=True)
    record, start = 0, 1
    try:
        if "text" not in (reader.fieldnames or []):
            columns = ", ".join(reader.fieldnames or [])
            raise UserError(f"predict file {path} needs a text column (columns: {columns})")
        start = reader.line_num + 1
        for row in reader:
            record += 1
            if None in row:  # more fields than the header names
                raise UserError(
                    f"predict file {path}, line {start}, has more fields than its header: quote texts with commas"
                )
            yield record, None if _is_blank(row) else row
            start = reader.line_num + 1
    except csv.Error as err:
        raise UserError(
            f"predict file {path}, line {start}, is not valid CSV ({err}): close its quotes, or double a "
            'quote inside a quoted text ("")'
        ) from err


def _text(record: dict, n: int, path: str) -> str:
    if not isinstance(record.get("text"), str):
        raise UserError(f"predict file {path}, record {n}, has no text: give every row a text value")
    return record["text"]


def iter_reviews(path: str):
    """Reviews to predict, streamed in file order as {"id", "text"}: .txt (one per line, empty lines
    skipped), .csv or .jsonl (a `text` column, optional `id`). Without an `id` column, the id is the 1-based
    line (.txt, .jsonl) or record (.csv) number, so rows can be matched to the file."""
    for n, record in _records(Path(path).expanduser(), path):
        if record is not None:
            yield {"id": str(record.get("id", n)), "text": _text(record, n, path)}


def scan_reviews(path: str) -> tuple[int, int]:
    """Check a predict file from end to end before any prediction is made, without holding it in memory:
    (reviews, empty lines skipped), or a UserError naming the problem."""
    file = Path(path).expanduser()
    if file_format(file) not in PREDICT_SUFFIXES:
        raise UserError(
            f"predict file {path} is not .txt, .csv or .jsonl (or one of those gzip-compressed, .txt.gz): "
            "save the reviews in one of those"
        )
    if not file.exists():
        raise UserError(f"predict file {path} does not exist: check data.predict_file")
    if not file.is_file():
        kind = "a folder" if file.is_dir() else "not a regular file (a pipe, socket or device)"
        raise UserError(f"predict file {path} is {kind}: pass a .txt, .csv or .jsonl file of reviews")
    stat = file.stat()
    return _scan(file, path, stat.st_size, stat.st_mtime_ns)


def _binary(head: bytes) -> bool:
    """Whether the first bytes of a file that holds NUL bytes are binary: images, archives and models hold
    them among other bytes or beside text. A text file with a stray line of nothing but NUL bytes (and
    other control characters) is text, and that line is skipped."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    # Quotes and commas around a text of NUL bytes are a .csv's, not text.
    return any(
        "\x00" in line and has_text(line.replace('"', "").replace(",", "")) for line in text.splitlines()
    )


@functools.cache
def _scan(file: Path, path: str, size: int, mtime_ns: int) -> tuple[int, int]:
    # Cached by size and modification time: the CLI checks the file before it starts other processes
    # (so a bad file is reported once, not once per process), and the data module's setup asks again.
    try:
        with _open(file) as handle:
            head = handle.read(8192)
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise UserError(
            f"predict file {path} cannot be read ({err}): pass a .txt, .csv or .jsonl of reviews"
        ) from err
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise UserError(f"predict file {path} is UTF-16 or UTF-32 text: re-save it as UTF-8")
    if b"\x00" in head and _binary(head):
        raise UserError(f"predict file {path} is binary, not text: pass a .txt, .csv or .jsonl of reviews")
    reviews = empty = 0
    try:
        for n, record in _records(file, path):
            if record is None:
                empty += 1
            else:
                _text(record, n, path)
                reviews += 1
    except (OSError, EOFError) as err:  # a gzip file cut short
        raise UserError(f"predict file {path} cannot be read to its end ({err}): check the file") from err
    if reviews == 0:
        raise UserError(
            f"predict file {path} is empty: put one review per line, or a text column in .csv/.jsonl"
        )
    return reviews, empty


class ReviewStream(IterableDataset):
    """The reviews of a predict file, read and tokenized as the DataLoader asks for them: files larger than
    memory stream through. Each review carries its position in the file (`index`).

    Batches are dealt out to the processes (ranks) first, then, within one, to its `workers` DataLoader
    worker processes: batch b of the file goes to rank b mod R, and of that rank's batches the k-th to
    worker k mod W. The DataLoader takes batches from its workers round robin, so every rank's output is in
    file order, and PredictionWriter merges the ranks' outputs by position.
    """

    def __init__(
        self,
        path: str,
        reviews: int,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        batch_size: int,
        truncation: str = "head",
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
    ):
        self.path, self.reviews, self.tokenizer = path, reviews, tokenizer
        self.max_length, self.truncation, self.batch_size = max_length, truncation, batch_size
        self.rank, self.world_size, self.workers = rank, world_size, max(workers, 1)

    def _owner(self, index: int) -> tuple[int, int]:
        """(rank, worker) of the review at `index`."""
        batch = index // self.batch_size
        return batch % self.world_size, batch // self.world_size % self.workers

    def __len__(self) -> int:
        # This rank's reviews, over all its workers: Lightning stops a rank after len() / batch_size
        # batches (rounded up), and the progress bar shows how far along a long file is.
        starts = range(0, self.reviews, self.batch_size)
        mine = [start for start in starts if self._owner(start)[0] == self.rank]
        return sum(min(self.batch_size, self.reviews - start) for start in mine)

    def __iter__(self):
        info = get_worker_info()
        worker, running = (info.id, info.num_workers) if info else (0, 1)
        if running != self.workers:  # its length would be wrong, and reviews lost or repeated
            raise RuntimeError(f"a ReviewStream dealt out to {self.workers} workers runs in {running}")
        for index, row in enumerate(iter_reviews(self.path)):
            if self._owner(index) == (self.rank, worker):
                # A batch of one: tokenize is the batched `datasets.map` function.
                encoded = tokenize({"text": [row["text"]]}, self.tokenizer, self.max_length, self.truncation)
                yield {"index": index, "id": row["id"], **{key: value[0] for key, value in encoded.items()}}
