"""What a GPU machine without network needs for benchmarks/gpu.sh, small enough to travel with the repository
(at most 64 MiB): the model's weights in fp16, xz-compressed, with its tokenizer; IMDb's train and test
reviews as xz-compressed tab-separated text; and wheels of the Python packages the machine's image lacks
(benchmarks/device-packages.txt lists what it has).

    python benchmarks/payload.py pack benchmarks/payload      # from ../shared and PyPI: 59 MiB, 3-4 minutes
    python benchmarks/payload.py unpack benchmarks/payload/imdb /tmp/imdb   # a folder data.dataset reads
    python benchmarks/payload.py unpack-model benchmarks/payload/model /tmp/model   # a from_pretrained folder
"""

import argparse
import lzma
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from datasets import ClassLabel, Dataset, Features, Value
from transformers import AutoModel, AutoTokenizer

from bert_imdb.data.imdb import LABEL_NAMES, load_imdb

SPLITS = ("train", "test")
LIMIT = 64 * 2**20  # what the device tool carries per call
# The wheels the image lacks (tests/bench/test_payload.py derives the list from pyproject.toml and
# device-packages.txt, and fails when a package is missing here), for the image's Python 3.12. datasets
# 5.0 is the newest whose pyarrow floor (21) an image of 2026 meets without carrying pyarrow (40 MB);
# 5.1 needs pyarrow 24. dill and multiprocess: the versions datasets 5.0 accepts.
WHEELS = (
    "datasets==5.0.0",
    "dill==0.4.0",
    "multiprocess==0.70.18",
    "jsonargparse==4.53.0",
    "docstring-parser==0.18.0",
    "typeshed-client==2.15.0",
    "torchdata==0.11.0",
)
WEIGHTS = "model.safetensors"
ESCAPED = re.compile(r"\\(.)")
FEATURES = Features({"text": Value("string"), "label": ClassLabel(names=LABEL_NAMES)})


def pack(out: Path, model: str, dataset: str, wheels: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pack_model(model, out / "model")
    imdb = load_imdb(dataset)
    (out / "imdb").mkdir(exist_ok=True)
    for split in SPLITS:
        rows = imdb[split]
        lines = (
            f"{label}\t{_escape(text)}\n" for label, text in zip(rows["label"], rows["text"], strict=True)
        )
        with lzma.open(
            out / "imdb" / f"{split}.tsv.xz", "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME
        ) as f:
            f.writelines(lines)
    if wheels:
        download_wheels(out / "wheels")
    print(check_size(out))


def pack_model(model: str, out: Path) -> None:
    """The model in fp16 (bert_imdb and the benchmark's peers load it as fp32 again), its weights
    xz-compressed: 45 MB of fp16 weights become 41."""
    AutoModel.from_pretrained(model, dtype=torch.float16).save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    with (out / WEIGHTS).open("rb") as raw, lzma.open(out / f"{WEIGHTS}.xz", "wb", preset=9) as packed:
        shutil.copyfileobj(raw, packed)
    (out / WEIGHTS).unlink()


def unpack_model(source: Path, out: Path) -> None:
    """A packed model folder as one `from_pretrained` reads."""
    out.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.name == f"{WEIGHTS}.xz":
            with lzma.open(file, "rb") as packed, (out / WEIGHTS).open("wb") as raw:
                shutil.copyfileobj(packed, raw)
        else:
            shutil.copy2(file, out / file.name)
    print(out)


def download_wheels(out: Path) -> None:
    """The wheels of WHEELS for the GPU machine's Python 3.12 on x86-64 Linux, from PyPI."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", "3.12", "--platform", "manylinux2014_x86_64", "--dest", str(out)]
    subprocess.run([*command, *WHEELS], check=True)


def check_size(out: Path, limit: int = LIMIT) -> str:
    """What the payload carries, by folder; an error if it is over what one device call carries."""
    sizes = {
        folder.name: sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        for folder in sorted(out.iterdir())
        if folder.is_dir()
    }
    total = sum(sizes.values())
    listing = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items())
    if total > limit:
        raise SystemExit(
            f"payload {out} is {total / 2**20:.1f} MiB ({listing}): over {limit / 2**20:.0f} MiB"
        )
    return f"packed {out}: {total / 2**20:.1f} MiB of {limit / 2**20:.0f} ({listing})"


def _escape(text: str) -> str:
    """One review on one line: backslashes, tabs and newlines written as \\\\, \\t and \\n."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _unescape(text: str) -> str:
    return ESCAPED.sub(lambda m: {"t": "\t", "n": "\n", "\\": "\\"}[m.group(1)], text)


def unpack(source: Path, out: Path) -> None:
    """The packed reviews as a folder laid out like the Hub's stanfordnlp/imdb, which data.dataset reads."""
    (out / "plain_text").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with lzma.open(source / f"{split}.tsv.xz", "rt", encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t", 1) for line in f]
        data = Dataset.from_dict(
            {"text": [_unescape(text) for _, text in rows], "label": [int(label) for label, _ in rows]},
            features=FEATURES,
        )
        data.to_parquet(str(out / "plain_text" / f"{split}-00000-of-00001.parquet"))
    print(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="model (fp16, xz), reviews (xz) and wheels into OUT")
    packing.add_argument("out", type=Path)
    packing.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2")
    packing.add_argument("--dataset", default="../shared/imdb")
    packing.add_argument("--no-wheels", action="store_true", help="carry no wheels (no PyPI needed)")
    for name, what in (
        ("unpack", "packed reviews into a Hub-layout folder"),
        ("unpack-model", "a packed model"),
    ):
        unpacking = commands.add_parser(name, help=what)
        unpacking.add_argument("source", type=Path)
        unpacking.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.out, args.model, args.dataset, wheels=not args.no_wheels)
    elif args.command == "unpack-model":
        unpack_model(args.source, args.out)
    else:
        unpack(args.source, args.out)


if __name__ == "__main__":
    main()
