"""Reading IMDb: from a Hub id, a local folder laid out like the Hub repository, or an extracted aclImdb/,
with its splits and labels checked, and the subsets a run trains, validates and tests on."""

import hashlib
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, Value, concatenate_datasets, load_dataset
from datasets.exceptions import DatasetGenerationError, DatasetNotFoundError
from lightning.pytorch.utilities import rank_zero_warn

from bert_imdb.errors import UserError
from bert_imdb.sources import looks_like_path

# IMDb's labels, in the order of their ids: the classifier's id2label comes from here.
LABEL_NAMES = ["neg", "pos"]


# What a dataset's own label names may call IMDb's two classes, lower-cased ("0" and "1": ids as names).
NAME_TO_ID = {"neg": 0, "negative": 0, "0": 0, "pos": 1, "positive": 1, "1": 1}
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


def _local_cache_dir(folder: Path) -> str:
    """A datasets cache folder of a local dataset folder's own, named after its files (paths, sizes and
    modification times). datasets names the cache of a local folder after the folder's name and its
    README's configs only (seen with datasets 5.2): two folders both called imdb with the same README (a
    copy of stanfordnlp/imdb and a smaller one for tests, say) would share a cache, and the second would
    silently load the first's reviews."""
    files = sorted(p for p in folder.resolve().rglob("*") if p.is_file())
    listing = "\n".join(f"{p} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files)
    digest = hashlib.sha256(listing.encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "bert_imdb-local" / f"{folder.name}-{digest}")


def _load_splits(dataset: str, needed: tuple[str, ...]) -> DatasetDict:
    """The splits of IMDb from a Hub id, a local Hub-layout folder or an extracted aclImdb/."""
    path = Path(dataset).expanduser()
    acl_root = _acl_imdb_root(path) if path.is_dir() else None
    if acl_root is not None:
        data = _load_acl_imdb(acl_root)
    elif not path.exists() and looks_like_path(dataset):
        raise UserError(f"dataset path {dataset} does not exist: check data.dataset, or use stanfordnlp/imdb")
    else:
        try:
            data = load_dataset(dataset, cache_dir=_local_cache_dir(path) if path.is_dir() else None)
        except (DatasetNotFoundError, DatasetGenerationError, FileNotFoundError, ValueError) as err:
            # DatasetGenerationError says only "An error occurred while generating the dataset"; its cause
            # names the file and the problem (a column of numbers in one file and text in another, say).
            cause = err.__cause__ if isinstance(err, DatasetGenerationError) and err.__cause__ else err
            reason = " ".join(str(cause).split())[:300]
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
    splits = [name for name in ("train", "unsupervised") if name in data]
    if any("text" not in data[name].column_names for name in splits):
        raise UserError(f"dataset {dataset} has no text column: rename the review column to text")
    return concatenate_datasets(
        [_checked_texts(data[name], name, dataset).select_columns("text") for name in splits]
    )


def _checked_split(data: Dataset, split: str, source: str) -> Dataset:
    """Check the columns and labels of one split; labels become ClassLabel(neg, pos). Other columns (a
    URL, a rating) are left out, said in one line: the batches hold text and label alone."""
    missing = [column for column in ("text", "label") if column not in data.column_names]
    if missing:
        raise UserError(
            f"the {split} split of {source} has no {' or '.join(missing)} column "
            f"(columns: {', '.join(data.column_names)}): rename its columns to text and label"
        )
    extra = [column for column in data.column_names if column not in ("text", "label")]
    if extra:
        rank_zero_warn(
            f"the {split} split of {source}: columns {', '.join(extra)} are not used (only text and label)"
        )
        data = data.select_columns(["text", "label"])
    data = _checked_texts(data, split, source)
    feature, labels = data.features["label"], set(data.unique("label"))
    if labels <= {0, 1}:
        if isinstance(feature, ClassLabel) and feature.names == LABEL_NAMES:
            return data
        if isinstance(feature, ClassLabel):
            data = _relabelled_by_name(
                data.cast_column("label", Value("int64")), feature.names, split, source
            )
        return data.cast_column("label", ClassLabel(names=LABEL_NAMES))
    if labels <= set(LABEL_NAMES):
        return data.cast_column("label", ClassLabel(names=LABEL_NAMES))
    shown = ", ".join(sorted(map(str, labels))[:5])
    raise UserError(f"the {split} split of {source} has labels {shown}: IMDb labels must be 0/1 or neg/pos")


def _checked_texts(data: Dataset, split: str, source: str) -> Dataset:
    """Texts are strings, none missing; reviews of no text (empty or whitespace) are skipped with a
    warning, as predict files skip them: a label on no words only teaches the model noise. Counted with
    Arrow's compute functions over the column, not row by row in Python."""
    feature = data.features["text"]
    if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
        kind = feature.dtype if isinstance(feature, Value) else type(feature).__name__
        raise UserError(
            f"the text column of the {split} split of {source} is {kind}, not strings: store every review as a string"
        )
    texts = data.with_format("arrow")["text"]
    if texts.null_count:
        first = pc.index(pc.is_null(texts), True).as_py()
        raise UserError(
            f"the {split} split of {source} has {texts.null_count} review(s) with no text value (the first is "
            f"row {first}): fill them in or remove those rows"
        )
    blank = np.asarray(pc.equal(pc.utf8_trim_whitespace(texts), "").to_numpy(zero_copy_only=False))
    if blank.any():
        rows = np.flatnonzero(blank)
        rank_zero_warn(
            f"the {split} split of {source} has {len(rows)} empty review(s) (the first is row {rows[0]}): "
            "skipped"
        )
        data = data.select(np.flatnonzero(~blank))
    return data


def _to_imdb_id(batch: dict, ids: list[int]) -> dict:
    return {"label": [ids[label] for label in batch["label"]]}


def _relabelled_by_name(data: Dataset, names: list[str], split: str, source: str) -> Dataset:
    """Labels given as ids of a ClassLabel with other names than (neg, pos), as IMDb's ids (0 neg, 1 pos),
    by what each name means: ClassLabel(names=["pos", "neg"]) gives positive reviews the id 0."""
    ids = [NAME_TO_ID.get(name.strip().lower()) for name in names]
    if None in ids or sorted(ids) != [0, 1]:
        raise UserError(
            f"the {split} split of {source} names its labels {', '.join(names)}: name them neg and pos, so "
            "that bert_imdb can tell which reviews are positive"
        )
    return data.map(_to_imdb_id, batched=True, fn_kwargs={"ids": ids})


def _take(data: Dataset, limit: int | None, split: str, limit_key: str) -> Dataset:
    if len(data) == 0 and limit is None:
        raise UserError(f"the dataset's {split} split has no reviews: check data.dataset")
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    if len(data) == 0:
        raise UserError(
            f"the {split} split is empty after data.{limit_key}={limit}: raise it, or leave it unset"
        )
    return data


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
    try:
        held_out = imdb["train"].train_test_split(
            test_size=val_fraction, seed=seed, stratify_by_column="label"
        )
    except ValueError as err:
        # datasets' stratified split needs two reviews of each label and a held-out part of at least one
        # per label; its message says which, in its own terms.
        reason = " ".join(str(err).split())
        raise UserError(
            f"cannot hold out data.val_fraction={val_fraction} of the {len(imdb['train'])} training reviews "
            f"with both labels in each part ({reason}): add reviews of the rarer label, or change data.val_fraction"
        ) from None
    subsets = {
        "train": _take(held_out["train"], max_train, "train", "max_train_samples"),
        "val": _take(held_out["test"], max_val, "validation", "max_val_samples"),
        "test": _take(imdb["test"].shuffle(seed=seed), max_test, "test", "max_test_samples"),
    }
    _check_both_labels(subsets["train"], max_train)
    return subsets


def _check_both_labels(train: Dataset, limit: int | None) -> None:
    """A training set of one label trains a model that always says it, with nothing to warn of it."""
    found = set(train.unique("label"))
    if len(found) < len(LABEL_NAMES):
        [only] = found
        fix = "raise data.max_train_samples, or check data.dataset" if limit else "check data.dataset"
        raise UserError(
            f"the {len(train)} training reviews are all {LABEL_NAMES[only]}: a classifier needs both labels: {fix}"
        )
