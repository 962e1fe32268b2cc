"""IMDb reviews as a LightningDataModule: loading, validation carving, sample limits, tokenization, batching."""

import codecs
import csv
import json
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value, concatenate_datasets, load_dataset
from datasets.exceptions import DatasetNotFoundError
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from bert_imdb.batching import LengthGroupedSampler, token_lengths
from bert_imdb.errors import UserError
from bert_imdb.pretrained import check_max_length, load_tokenizer

LABEL_NAMES = ["neg", "pos"]
PREDICT_SUFFIXES = (".txt", ".csv", ".jsonl")


TRUNCATIONS = ("head", "tail", "head+tail")


def tokenize(
    batch: dict, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str = "head"
) -> dict:
    """The `datasets.map` function. Module level and free of state, so its fingerprint is stable and a
    second run (or the `setup` after `prepare_data`) loads the cached result instead of re-tokenizing.

    Reviews longer than `max_length` keep their first tokens ("head", the tokenizer's own truncation),
    their last ("tail"), or both ("head+tail": the first quarter of the budget and the end, 128 + 382 at
    512, which Sun et al. 2019 found best for IMDb). Tokenizers truncate at one end only, hence the code.
    """
    if truncation == "head":
        return tokenizer(batch["text"], truncation=True, max_length=max_length)
    budget = max_length - tokenizer.num_special_tokens_to_add()
    head = budget // 4 if truncation == "head+tail" else 0
    encoded = tokenizer(batch["text"], return_special_tokens_mask=True)
    out = {key: [] for key in encoded if key != "special_tokens_mask"}
    for i, special in enumerate(encoded["special_tokens_mask"]):
        # The special tokens the tokenizer put around the review ([CLS] ... [SEP] for BERT) stay.
        start = special.index(0) if 0 in special else len(special)
        end = len(special) - (special[::-1].index(0) if 0 in special else 0)
        cut = end - start > budget
        for key in out:
            values = encoded[key][i]
            middle = values[start:end]
            if cut:
                middle = middle[:head] + middle[len(middle) - (budget - head) :]
            out[key].append(values[:start] + middle + values[end:])
    return out


ACL_IMDB_LABELS = {"neg": 0, "pos": 1, "unsup": -1}  # -1: unlabelled, as in stanfordnlp/imdb


def _read_acl_imdb(files: list[str]):
    for file in files:
        yield {
            "text": Path(file).read_text(encoding="utf-8"),
            "label": ACL_IMDB_LABELS[Path(file).parent.name],
        }


def _acl_imdb_root(path: Path) -> Path | None:
    """The folder holding train/ and test/ of the original Stanford distribution, if `path` is one."""
    for root in (path, path / "aclImdb"):
        if any((root / split / "pos").is_dir() for split in ("train", "test")):
            return root
    return None


def _load_acl_imdb(root: Path) -> DatasetDict:
    # The Stanford layout has one file per review, which no `datasets` builder reads with its label, so a
    # generator does. The file list is part of the fingerprint: adding or removing reviews rebuilds the cache.
    folders = {
        "train": ("train", ["neg", "pos"]),
        "test": ("test", ["neg", "pos"]),
        "unsupervised": ("train", ["unsup"]),
    }
    splits = {}
    for split, (folder, labels) in folders.items():
        files = sorted(str(f) for label in labels for f in (root / folder / label).glob("*.txt"))
        if files:
            splits[split] = Dataset.from_generator(_read_acl_imdb, gen_kwargs={"files": files}, split=split)
    return DatasetDict(splits)


def _load_splits(dataset: str, needed: tuple[str, ...]) -> DatasetDict:
    """The splits of IMDb from a Hub id, a local Hub-layout folder or an extracted aclImdb/."""
    path = Path(dataset).expanduser()
    acl_root = _acl_imdb_root(path) if path.is_dir() else None
    if acl_root is not None:
        data = _load_acl_imdb(acl_root)
    elif not path.exists() and (dataset.startswith((".", "/", "~")) or dataset.count("/") > 1):
        raise UserError(f"dataset path {dataset} does not exist: check data.dataset, or use stanfordnlp/imdb")
    else:
        try:
            data = load_dataset(dataset)
        except (DatasetNotFoundError, FileNotFoundError, ValueError) as err:
            reason = str(err).strip().splitlines()[0]
            raise UserError(
                f"cannot load dataset {dataset!r} ({reason}); point data.dataset at a folder with "
                "train/test data files (Hub layout) or an extracted aclImdb/"
            ) from err
    missing = [split for split in needed if split not in data]
    if missing:
        raise UserError(
            f"dataset {dataset} has no {' or '.join(missing)} split (found: {', '.join(data) or 'none'}); "
            "it needs train and test data, laid out like stanfordnlp/imdb or aclImdb/"
        )
    return data


def load_imdb(dataset: str) -> DatasetDict:
    """Train and test splits of IMDb, with labels checked and cast to ClassLabel(neg, pos)."""
    data = _load_splits(dataset, ("train", "test"))
    return DatasetDict({split: _checked_split(data[split], split, dataset) for split in ("train", "test")})


def load_imdb_text(dataset: str) -> Dataset:
    """The review texts of the train and (where there is one) unsupervised splits, for pre-training.

    Never the test split: a model pre-trained on test reviews would be evaluated on text it has seen.
    """
    data = _load_splits(dataset, ("train",))
    splits = [data[split] for split in ("train", "unsupervised") if split in data]
    if any("text" not in split.column_names for split in splits):
        raise UserError(f"dataset {dataset} has no text column: rename the review column to text")
    return concatenate_datasets([split.select_columns("text") for split in splits])


def _checked_split(data: Dataset, split: str, source: str) -> Dataset:
    """Check the columns and labels of one split; labels become ClassLabel(neg, pos)."""
    missing = [column for column in ("text", "label") if column not in data.column_names]
    if missing:
        raise UserError(
            f"the {split} split of {source} has no {' or '.join(missing)} column "
            f"(columns: {', '.join(data.column_names)}): rename its columns to text and label"
        )
    feature, labels = data.features["label"], set(data.unique("label"))
    if labels <= {0, 1}:
        if isinstance(feature, ClassLabel) and feature.names == LABEL_NAMES:
            return data
        if isinstance(feature, ClassLabel):
            data = data.cast_column("label", Value("int64"))
        return data.cast_column("label", ClassLabel(names=LABEL_NAMES))
    if labels <= set(LABEL_NAMES):
        return data.cast_column("label", ClassLabel(names=LABEL_NAMES))
    shown = ", ".join(sorted(map(str, labels))[:5])
    raise UserError(f"the {split} split of {source} has labels {shown}: IMDb labels must be 0/1 or neg/pos")


def _take(data: Dataset, limit: int | None, split: str, limit_key: str) -> Dataset:
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    if len(data) == 0:
        raise UserError(
            f"the {split} split is empty after data.{limit_key}={limit}: raise it, or leave it unset"
        )
    return data


def _lines(file: Path, path: str):
    """The lines of a file as text, decoded one by one so that a non-UTF-8 byte is reported with its line."""
    with file.open("rb") as handle:
        for n, raw in enumerate(handle, 1):
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
    if file.suffix == ".csv":
        reader = csv.DictReader(_lines(file, path))
        if "text" not in (reader.fieldnames or []):
            columns = ", ".join(reader.fieldnames or [])
            raise UserError(f"predict file {path} needs a text column (columns: {columns})")
        yield from enumerate(reader, 1)
        return
    for line, content in enumerate(_lines(file, path), 1):
        content = content.rstrip("\r\n")
        if not content.strip():
            yield line, None
        elif file.suffix == ".txt":
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
            yield line, record


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
    if file.suffix not in PREDICT_SUFFIXES:
        raise UserError(f"predict file {path} is not .txt, .csv or .jsonl: save the reviews in one of those")
    if not file.is_file():
        raise UserError(f"predict file {path} does not exist: check data.predict_file")
    with file.open("rb") as handle:
        if b"\x00" in handle.read(8192):  # text never holds NUL bytes; images, archives and models do
            raise UserError(
                f"predict file {path} is binary, not text: pass a .txt, .csv or .jsonl of reviews"
            )
    reviews = empty = 0
    for n, record in _records(file, path):
        if record is None:
            empty += 1
        else:
            _text(record, n, path)
            reviews += 1
    if reviews == 0:
        raise UserError(
            f"predict file {path} is empty: put one review per line, or a text column in .csv/.jsonl"
        )
    return reviews, empty


class ReviewStream(IterableDataset):
    """The reviews of a predict file, read and tokenized as the DataLoader asks for them: files larger than
    memory stream through. Each review carries its position in the file (`index`).

    Batches are dealt out to the processes (ranks) and, within one, to DataLoader workers: shard
    s = rank x workers + worker takes batches s, s + S, s + 2S, ... of the file. The DataLoader takes
    batches from its workers round robin, so every rank's output is in file order, and PredictionWriter
    merges the ranks' outputs by position.
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
    ):
        self.path, self.reviews, self.tokenizer = path, reviews, tokenizer
        self.max_length, self.truncation, self.batch_size = max_length, truncation, batch_size
        self.rank, self.world_size = rank, world_size

    def _mine(self, index: int, worker: int, workers: int) -> bool:
        return (index // self.batch_size) % (self.world_size * workers) == self.rank * workers + worker

    def __len__(self) -> int:
        # This rank's share of the reviews: the progress bar then shows how far along a long file is.
        starts = range(0, self.reviews, self.batch_size)
        return sum(min(self.batch_size, self.reviews - start) for start in starts if self._mine(start, 0, 1))

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for index, row in enumerate(iter_reviews(self.path)):
            if self._mine(index, worker, workers):
                # A batch of one: tokenize is the batched `datasets.map` function.
                encoded = tokenize({"text": [row["text"]]}, self.tokenizer, self.max_length, self.truncation)
                yield {"index": index, "id": row["id"], **{key: value[0] for key, value in encoded.items()}}


class CollateWithStrings:
    """DataCollatorWithPadding for batches that also carry positions, ids or review texts, which are no
    model inputs: they pass through as lists."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None):
        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: list[dict]) -> dict:
        strings = {
            key: [f.pop(key) for f in features] for key in ("index", "id", "text") if key in features[0]
        }
        return {**self.pad(features), **strings}


def imdb_subsets(
    dataset: str,
    seed: int,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    val_fraction: float = 0.1,
) -> dict[str, Dataset]:
    """The reviews a run uses: a stratified, seeded `val_fraction` of train held out for validation,
    the first `max_*` of each part (of a seeded shuffle, for test). The benchmark's peer uses it too."""
    imdb = load_imdb(dataset)
    held_out = imdb["train"].train_test_split(test_size=val_fraction, seed=seed, stratify_by_column="label")
    return {
        "train": _take(held_out["train"], max_train, "train", "max_train_samples"),
        "val": _take(held_out["test"], max_val, "validation", "max_val_samples"),
        "test": _take(imdb["test"].shuffle(seed=seed), max_test, "test", "max_test_samples"),
    }


class IMDbDataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: str = "stanfordnlp/imdb",
        tokenizer_name_or_path: str = "bert-base-uncased",
        max_length: int = 512,
        truncation: Literal["head", "tail", "head+tail"] = "head+tail",
        pad_to_multiple_of: int | None = None,
        batch_size: int = 32,
        group_by_length: bool = True,
        eval_batch_size: int = 64,
        val_fraction: float = 0.1,
        max_train_samples: int | None = None,
        max_val_samples: int | None = None,
        max_test_samples: int | None = None,
        predict_file: str | None = None,
        num_workers: int = 0,
        num_proc: int | None = None,
        seed: int = 42,
    ):
        """IMDb movie reviews for sentiment classification.

        Args:
            dataset: Hub id, local folder laid out like stanfordnlp/imdb, or an extracted aclImdb/ folder.
            tokenizer_name_or_path: Tokenizer to use; linked to model.model_name_or_path by the CLI.
            max_length: Reviews are truncated to this many tokens (special tokens included).
            truncation: Which tokens of a longer review to keep: its first, its last, or both ("head+tail":
                the first quarter of max_length and the end, the most accurate on IMDb). A pipeline on an
                exported model truncates at the head: predict with "head" to match it exactly.
            pad_to_multiple_of: Pad each batch to a multiple of this many tokens (e.g. 8, for tensor cores).
            batch_size: Training reviews per batch (per device).
            group_by_length: Put reviews of similar length in the same training batch (shuffled batches),
                so little of each batch is padding. Evaluation always runs longest reviews first.
            eval_batch_size: Validation, test and predict reviews per batch (per device).
            val_fraction: Share of the train split held out for validation; test never picks checkpoints.
            max_train_samples: Train on the first N reviews of the seeded shuffle (all when unset).
            max_val_samples: Validate on the first N held-out reviews (all when unset).
            max_test_samples: Test on the first N reviews of the seeded shuffle of the test split.
            predict_file: Reviews for `predict`: .txt (one per line), .csv or .jsonl with a text column.
            num_workers: DataLoader worker processes.
            num_proc: Processes that tokenize (datasets.map); one is enough unless the machine has cores
                to spare: the tokenizer is already fast.
            seed: Seed of the shuffles that pick subsets; linked to seed_everything by the CLI.
        """
        super().__init__()
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction={val_fraction} must lie between 0 and 1, e.g. 0.1")
        if truncation not in TRUNCATIONS:
            raise UserError(f"data.truncation={truncation!r} is unknown: use one of {', '.join(TRUNCATIONS)}")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise UserError(f"data.pad_to_multiple_of={pad_to_multiple_of} must be at least 1, e.g. 8")
        check_max_length(tokenizer_name_or_path, max_length)
        self.save_hyperparameters()
        self.tokenizer = load_tokenizer(tokenizer_name_or_path)
        self.collate = CollateWithStrings(self.tokenizer, pad_to_multiple_of)
        self.datasets: dict[str, Dataset] = {}

    def _tokenized_splits(self, names: list[str]) -> dict[str, Dataset]:
        hp = self.hparams
        subsets = imdb_subsets(
            hp.dataset,
            hp.seed,
            hp.max_train_samples,
            hp.max_val_samples,
            hp.max_test_samples,
            hp.val_fraction,
        )
        return {
            name: subsets[name]
            .map(
                tokenize,
                batched=True,
                fn_kwargs={
                    "tokenizer": self.tokenizer,
                    "max_length": hp.max_length,
                    "truncation": hp.truncation,
                },
                # Evaluation keeps the text, to show the most confidently wrong reviews in TensorBoard.
                remove_columns=["text"] if name == "train" else [],
                desc=f"Tokenizing {name}",
                num_proc=hp.num_proc,
            )
            .rename_column("label", "labels")
            for name in names
        }

    def prepare_data(self) -> None:
        # Once per node, before setup: fills the datasets cache (all three splits, so a later `test` finds
        # its split ready), which setup then only reads. `predict` reads its own file and needs none of them.
        if self.trainer is not None and self.trainer.state.fn == "predict":
            return
        self._tokenized_splits(["train", "val", "test"])

    def setup(self, stage: str) -> None:
        if stage == "predict":
            if self.hparams.predict_file is None:
                raise UserError("predict needs reviews: pass --data.predict_file <file.txt|.csv|.jsonl>")
            path = self.hparams.predict_file
            reviews, empty = scan_reviews(path)
            skipped = f" ({empty} empty line{'s' * (empty != 1)} skipped)" if empty else ""
            rank_zero_info(f"Predicting {reviews} reviews from {path}{skipped}")
            self.datasets["predict"] = ReviewStream(
                path,
                reviews,
                self.tokenizer,
                self.hparams.max_length,
                self.hparams.eval_batch_size,
                truncation=self.hparams.truncation,
                rank=self.trainer.global_rank if self.trainer else 0,
                world_size=self.trainer.world_size if self.trainer else 1,
            )
        else:
            splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}[stage]
            for name, data in self._tokenized_splits(splits).items():
                if name != "train":
                    # Longest first: batches of similar length pad little, and running out of memory
                    # shows on the first batch. Metrics do not depend on the order.
                    data = data.select(np.argsort(-token_lengths(data), kind="stable"))
                self.datasets[name] = data

    def _loader(self, split: str, batch_size: int, shuffle: bool = False, sampler=None) -> DataLoader:
        # Stateful: Lightning saves how far through the epoch it is, so a run resumed from a mid-epoch
        # checkpoint goes on with the batches it had not seen, in the same order.
        return StatefulDataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if not hp.group_by_length:
            return self._loader("train", hp.batch_size, shuffle=True)
        sampler = LengthGroupedSampler(
            token_lengths(self.datasets["train"]),
            hp.batch_size,
            num_replicas=self.trainer.world_size if self.trainer else 1,
            rank=self.trainer.global_rank if self.trainer else 0,
            seed=hp.seed,
        )
        return self._loader("train", hp.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self.hparams.eval_batch_size)
