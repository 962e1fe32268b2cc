"""IMDb reviews as a LightningDataModule: loading, validation carving, sample limits, tokenization, batching."""

import csv
import json
from pathlib import Path

import lightning as L
from datasets import ClassLabel, Dataset, DatasetDict, Value, concatenate_datasets, load_dataset
from datasets.exceptions import DatasetNotFoundError
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from bert_imdb.errors import UserError
from bert_imdb.pretrained import check_max_length, load_tokenizer

LABEL_NAMES = ["neg", "pos"]
PREDICT_SUFFIXES = (".txt", ".csv", ".jsonl")


def tokenize(batch: dict, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict:
    """The `datasets.map` function. Module level and free of state, so its fingerprint is stable and a
    second run (or the `setup` after `prepare_data`) loads the cached result instead of re-tokenizing."""
    return tokenizer(batch["text"], truncation=True, max_length=max_length)


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


def read_reviews(path: str) -> list[dict]:
    """Reviews to predict: .txt (one per non-empty line), .csv or .jsonl (a `text` column, optional `id`).

    Rows keep the file's order; without an `id` column, the id is the 1-based line or record number.
    """
    file = Path(path).expanduser()
    if file.suffix not in PREDICT_SUFFIXES:
        raise UserError(f"predict file {path} is not .txt, .csv or .jsonl: save the reviews in one of those")
    if not file.is_file():
        raise UserError(f"predict file {path} does not exist: check data.predict_file")
    try:
        content = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"predict file {path} is not UTF-8 text (byte {err.start}): re-save it as UTF-8"
        ) from err
    if "\x00" in content:
        raise UserError(f"predict file {path} is binary, not text: pass a .txt, .csv or .jsonl of reviews")
    if not content.strip():
        raise UserError(
            f"predict file {path} is empty: put one review per line, or a text column in .csv/.jsonl"
        )
    lines = content.splitlines()
    if file.suffix == ".txt":
        return [{"id": str(n), "text": line} for n, line in enumerate(lines, 1) if line.strip()]
    if file.suffix == ".csv":
        records = list(csv.DictReader(lines))
        columns = csv.DictReader(lines).fieldnames or []
    else:
        records = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(
                    f"predict file {path}, line {n}, is not valid JSON ({err.msg}): fix that line"
                ) from err
            if not isinstance(record, dict):
                raise UserError(f'predict file {path}, line {n}, is not a JSON object: write {{"text": ...}}')
            records.append(record)
        columns = sorted({key for record in records for key in record})
    if "text" not in columns or any(not isinstance(r.get("text"), str) for r in records):
        raise UserError(
            f"predict file {path} needs a text column on every row (columns: {', '.join(columns)})"
        )
    return [{"id": str(r.get("id", n)), "text": r["text"]} for n, r in enumerate(records, 1)]


class PredictDataset:
    """Reviews from `read_reviews`, tokenized one at a time as the DataLoader asks for them."""

    def __init__(self, rows: list[dict], tokenizer: PreTrainedTokenizerBase, max_length: int):
        self.rows, self.tokenizer, self.max_length = rows, tokenizer, max_length

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        return {"id": row["id"], **tokenize({"text": row["text"]}, self.tokenizer, self.max_length)}


class CollateWithStrings:
    """DataCollatorWithPadding for batches that also carry ids or review texts, which it cannot turn into
    tensors: they pass through as lists."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict]) -> dict:
        strings = {key: [f.pop(key) for f in features] for key in ("id", "text") if key in features[0]}
        return {**self.pad(features), **strings}


class IMDbDataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: str = "stanfordnlp/imdb",
        tokenizer_name_or_path: str = "bert-base-uncased",
        max_length: int = 512,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        val_fraction: float = 0.1,
        max_train_samples: int | None = None,
        max_val_samples: int | None = None,
        max_test_samples: int | None = None,
        predict_file: str | None = None,
        num_workers: int = 0,
        seed: int = 42,
    ):
        """IMDb movie reviews for sentiment classification.

        Args:
            dataset: Hub id, local folder laid out like stanfordnlp/imdb, or an extracted aclImdb/ folder.
            tokenizer_name_or_path: Tokenizer to use; linked to model.model_name_or_path by the CLI.
            max_length: Reviews are truncated to this many tokens (special tokens included).
            batch_size: Training reviews per batch (per device).
            eval_batch_size: Validation, test and predict reviews per batch (per device).
            val_fraction: Share of the train split held out for validation; test never picks checkpoints.
            max_train_samples: Train on the first N reviews of the seeded shuffle (all when unset).
            max_val_samples: Validate on the first N held-out reviews (all when unset).
            max_test_samples: Test on the first N reviews of the seeded shuffle of the test split.
            predict_file: Reviews for `predict`: .txt (one per line), .csv or .jsonl with a text column.
            num_workers: DataLoader worker processes.
            seed: Seed of the shuffles that pick subsets; linked to seed_everything by the CLI.
        """
        super().__init__()
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction={val_fraction} must lie between 0 and 1, e.g. 0.1")
        check_max_length(tokenizer_name_or_path, max_length)
        self.save_hyperparameters()
        self.tokenizer = load_tokenizer(tokenizer_name_or_path)
        self.collate = CollateWithStrings(self.tokenizer)
        self.datasets: dict[str, Dataset] = {}

    def _tokenized_splits(self, names: list[str]) -> dict[str, Dataset]:
        hp = self.hparams
        imdb = load_imdb(hp.dataset)
        held_out = imdb["train"].train_test_split(
            test_size=hp.val_fraction, seed=hp.seed, stratify_by_column="label"
        )
        subsets = {
            "train": lambda: _take(held_out["train"], hp.max_train_samples, "train", "max_train_samples"),
            "val": lambda: _take(held_out["test"], hp.max_val_samples, "validation", "max_val_samples"),
            "test": lambda: _take(
                imdb["test"].shuffle(seed=hp.seed), hp.max_test_samples, "test", "max_test_samples"
            ),
        }
        return {
            name: subsets[name]()
            .map(
                tokenize,
                batched=True,
                fn_kwargs={"tokenizer": self.tokenizer, "max_length": hp.max_length},
                # Evaluation keeps the text, to show the most confidently wrong reviews in TensorBoard.
                remove_columns=["text"] if name == "train" else [],
                desc=f"Tokenizing {name}",
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
            rows = read_reviews(self.hparams.predict_file)
            self.datasets["predict"] = PredictDataset(rows, self.tokenizer, self.hparams.max_length)
        else:
            splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}[stage]
            self.datasets.update(self._tokenized_splits(splits))

    def _loader(self, split: str, batch_size: int, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self.hparams.eval_batch_size)
