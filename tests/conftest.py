"""Shared fixtures: a tiny random BERT and tokenizer, and small IMDb-like datasets, all under tmp paths.

Nothing here reaches the Hugging Face Hub, and the datasets and torch.compile caches live in temporary
folders.
"""

import contextlib
import importlib.util
import os
import random
import shutil
import tempfile
import types
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="bert_imdb_test_datasets_")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Inductor's cache is shared by every process of a machine (/tmp/torchinductor_<user>): a compile cut off
# there leaves a truncated kernel that later compiles load and fail on. Each session compiles afresh, as CI.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bert_imdb_test_inductor_")

import lightning as L
import pytest
import torch

# Under pytest-xdist each worker shares the cores with the others: torch's default of one thread per core
# in every worker (and in every process a test starts) would oversubscribe them, and OpenMP's threads then
# spin waiting on each other.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(share)
    os.environ["OMP_NUM_THREADS"] = str(share)

from datasets import ClassLabel, Dataset, Features, Value
from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizerFast

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

POSITIVE = ["great", "wonderful", "excellent", "loved", "superb", "moving"]
NEGATIVE = ["awful", "terrible", "boring", "hated", "dull", "painful"]
FILLER = ["the", "movie", "film", "plot", "actor", "scene", "was", "and", "a", "story", "it", "this"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Sentence ends, for next-sentence pairs, and word pieces: "movies" is "movie" + "##s", "scene" + "##s"...
PUNCTUATION = [".", "!", "?"]
PIECES = ["##s", "##ed"]


def benchmark_script(name: str) -> types.ModuleType:
    """benchmarks/<name>.py, a script outside the package, loaded as a module: its functions run in this
    process, without a process's start-up."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_review(rng: random.Random, label: int) -> str:
    """A review whose sentiment words give its label away: a tiny model learns it in a few steps."""
    cue = POSITIVE if label == 1 else NEGATIVE
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 30))]
    for _ in range(2):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
    return " ".join(words)


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": make_review(rng, i % 2), "label": i % 2} for i in range(n)]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A random 2-layer, hidden-32 BERT encoder and its WordPiece tokenizer, saved with save_pretrained.

    Like all-MiniLM-L6-v2 it is a bare BertModel, so the classification head is new at fine-tuning.
    """
    folder = tmp_path_factory.mktemp("tiny-bert")
    words = SPECIAL + POSITIVE + NEGATIVE + FILLER + PUNCTUATION + PIECES + list("abcdefghijklmnopqrstuvwxyz")
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(words)}, model_max_length=128)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)  # the same random model in every session: a failure can be reproduced
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_pretraining_model(tiny_model, tmp_path_factory) -> str:
    """The tiny BERT with both pre-training heads (masked LM and next sentence prediction), like
    bert-base-uncased; the bare `tiny_model` has neither, like all-MiniLM-L6-v2."""
    folder = tmp_path_factory.mktemp("tiny-bert-pretraining")
    torch.manual_seed(0)
    BertForPreTraining(BertConfig.from_pretrained(tiny_model)).save_pretrained(folder)
    BertTokenizerFast.from_pretrained(tiny_model).save_pretrained(folder)
    return str(folder)


IMDB_FEATURES = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})


# The dataset card of stanfordnlp/imdb names its splits: `datasets` infers train and test from file names,
# but not unsupervised.
HUB_README = """---
configs:
- config_name: plain_text
  default: true
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
  - split: unsupervised
    path: plain_text/unsupervised-*
---
"""


# The environment SLURM gives a single-task batch job (what Lightning reads to detect SLURM).
SLURM_JOB = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "bert_imdb",
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_NODELIST": "localhost",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}


def write_hub_layout(folder: Path, n_train: int = 400, n_test: int = 64) -> Path:
    """A folder laid out like the Hub repository stanfordnlp/imdb (parquet files under plain_text/)."""
    (folder / "plain_text").mkdir(parents=True)
    (folder / "README.md").write_text(HUB_README)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1), ("unsupervised", 40, 2)):
        rows = make_rows(n, seed)
        if split == "unsupervised":
            rows = [{**row, "label": -1} for row in rows]
        data = Dataset.from_list(rows, features=IMDB_FEATURES)
        data.to_parquet(str(folder / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return folder


def make_text(rng: random.Random) -> str:
    """Unlabelled review text: two to six sentences, with multi-piece words and an HTML line break."""
    words = [*FILLER, "movies", "scenes", "actors", "plots"]
    sentences = [
        " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + " " + rng.choice(PUNCTUATION)
        for _ in range(rng.randint(2, 6))
    ]
    return " ".join(sentences[:2]) + "<br /><br />" + " ".join(sentences[2:])


@pytest.fixture
def text_dataset(tmp_path) -> str:
    """A Hub-layout IMDb with an unsupervised split (label -1, as in stanfordnlp/imdb), all of it text with
    sentences; the test split's reviews are marked with the word "excellent", which no other split has."""
    folder = tmp_path / "imdb-text"
    (folder / "plain_text").mkdir(parents=True)
    (folder / "README.md").write_text(HUB_README)
    rng = random.Random(2)
    for split, n in (("train", 200), ("unsupervised", 200), ("test", 50)):
        rows = [
            {
                "text": make_text(rng) + (" excellent ." if split == "test" else ""),
                "label": -1 if split == "unsupervised" else i % 2,
            }
            for i in range(n)
        ]
        data = Dataset.from_list(rows, features=IMDB_FEATURES)
        data.to_parquet(str(folder / "plain_text" / f"{split}-00000-of-00001.parquet"))
    return str(folder)


@pytest.fixture(scope="session")
def hub_dataset(tmp_path_factory) -> str:
    """One Hub-layout IMDb for the session, read-only: its tokenization is cached once, and every test reuses
    it (a test that needs other files writes its own with write_hub_layout)."""
    return str(write_hub_layout(tmp_path_factory.mktemp("hub") / "imdb"))


@pytest.fixture
def acl_imdb(tmp_path) -> str:
    """The original Stanford layout: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt."""
    root = tmp_path / "aclImdb"
    for split, n, seed in (("train", 60, 0), ("test", 20, 1)):
        for i, row in enumerate(make_rows(n, seed)):
            label = "pos" if row["label"] else "neg"
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}_{8 if row['label'] else 2}.txt").write_text(row["text"], encoding="utf-8")
    return str(root)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run in a fresh folder, so lightning_logs/ and outputs land under tmp_path."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    return run


@pytest.fixture(scope="session")
def fitted_run(tiny_model, hub_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch fit of the tiny classifier, once for the session, read-only: the folder it ran in (with
    its lightning_logs/) and its best checkpoint's path relative to that folder."""
    from bert_imdb.cli import cli_main  # after the environment above is set

    folder = tmp_path_factory.mktemp("fitted")
    with contextlib.chdir(folder):
        fit = cli_main(["fit", *tiny_args(tiny_model, hub_dataset, "--trainer.max_epochs=1")])
        best = Path(fit.trainer.checkpoint_callback.best_model_path).resolve()
    return folder, best.relative_to(folder.resolve())


@pytest.fixture
def best_checkpoint(fitted_run, workdir) -> Path:
    """The best checkpoint of a one-epoch fit of the tiny classifier, in this test's own copy of the run's
    lightning_logs/ (in its working folder, as if it had fitted there)."""
    folder, best = fitted_run
    shutil.copytree(folder / "lightning_logs", workdir / "lightning_logs")
    return (workdir / best).resolve()


def pytest_collection_modifyitems(config, items):
    """The slow tests first, each worker then filling its time with the quick ones: started last, a 90 s
    test left the other worker idle at the end of the run. Stable, so each group keeps its file order (and
    every xdist worker collects the same order). The parts of gpu.sh's rehearsal that need
    --gpu-rehearsal are skipped without it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    # Skipped here, not in the test: a skip in the test body comes after its fixtures (gpu.sh's payload,
    # seconds to build) are set up for nothing.
    if not config.getoption("gpu_rehearsal"):
        skip = pytest.mark.skip(
            reason="parts c, d, e and b of gpu.sh's CPU rehearsal run with --gpu-rehearsal"
        )
        for item in items:
            if item.get_closest_marker("gpu_rehearsal"):
                item.add_marker(skip)


def pytest_addoption(parser):
    parser.addoption("--resume-scenarios", type=int, default=40, help="generated resume scenarios to run")
    parser.addoption("--flag-draws", type=int, default=10, help="generated Trainer-flag combinations to run")
    parser.addoption(
        "--predict-loops",
        type=int,
        default=1,
        help="how many times the DDP predict layouts run in a row, in one process (about 40 s each on 2 cores)",
    )
    parser.addoption(
        "--flag-seed", type=int, default=2026, help="seed of the generated Trainer-flag combinations"
    )
    parser.addoption(
        "--gpu-rehearsal",
        action="store_true",
        help="run every part of benchmarks/gpu.sh's CPU rehearsal (the suite runs part a through it)",
    )
    parser.addoption("--resume-seed", type=int, default=2026, help="seed of the generated resume scenarios")
    parser.addoption(
        "--resume-ddp-scenarios",
        type=int,
        default=3,
        help="generated resume scenarios to run in two processes (about 35 s each on 2 cores)",
    )


def training_batches(datamodule):
    """A data module's training batches as the model gets them: pre-training batches are masked in the
    main process, by the data module's on_before_batch_transfer, as Lightning calls it."""
    for batch in datamodule.train_dataloader():
        yield datamodule.on_before_batch_transfer(batch, 0)


def quiet_trainer(**settings) -> L.Trainer:
    """A Trainer on the CPU that writes and prints nothing of its own (no logger, checkpoints, progress bar
    or model summary) unless `settings` ask for it; `settings` override these."""
    quiet = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**quiet, **settings})


def tiny_args(model: str, dataset: str, *extra: str) -> list[str]:
    """CLI arguments for a fast run of the tiny model on a tiny dataset, on the CPU."""
    return [
        f"--model.model_name_or_path={model}",
        # Learns the cue words in two epochs at 0.0015 to 0.0025 for every seed tried, grouped batches or not.
        "--model.learning_rate=0.002",
        f"--data.dataset={dataset}",
        "--data.max_length=64",
        "--data.batch_size=8",
        "--data.eval_batch_size=16",
        "--data.val_fraction=0.2",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.max_epochs=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.logger.init_args.name=tiny",
        *extra,
    ]


def mlm_args(model: str, dataset: str, *extra: str) -> list[str]:
    """CLI arguments for a fast masked-language-model run of the tiny model, on the CPU."""
    return [
        "--model=bert_imdb.MaskedLanguageModel",
        f"--model.model_name_or_path={model}",
        "--model.learning_rate=0.003",
        "--data=bert_imdb.IMDbPretrainingDataModule",
        f"--data.dataset={dataset}",
        "--data.max_length=32",
        "--data.batch_size=16",
        "--data.eval_batch_size=32",
        "--data.val_reviews=40",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.max_epochs=1",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.logger.init_args.name=mlm",
        *extra,
    ]
