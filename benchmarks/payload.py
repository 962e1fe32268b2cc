"""What a GPU machine without network needs for benchmarks/gpu.sh, small enough to travel with the repository
(at most 64 MiB): the model's weights in fp16 with its tokenizer, and IMDb's train and test reviews as
xz-compressed tab-separated text.

    python benchmarks/payload.py pack benchmarks/payload      # from ../shared: about 64 MB, 2-3 minutes
    python benchmarks/payload.py unpack benchmarks/payload/imdb /tmp/imdb   # a folder data.dataset reads
"""

import argparse
import lzma
import re
from pathlib import Path

import torch
from datasets import ClassLabel, Dataset, Features, Value
from transformers import AutoModel, AutoTokenizer

from bert_imdb.data.imdb import LABEL_NAMES, load_imdb

SPLITS = ("train", "test")
ESCAPED = re.compile(r"\\(.)")
FEATURES = Features({"text": Value("string"), "label": ClassLabel(names=LABEL_NAMES)})


def pack(out: Path, model: str, dataset: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # fp16 halves the weights; bert_imdb and the benchmark's peer load them as fp32 again.
    AutoModel.from_pretrained(model, dtype=torch.float16).save_pretrained(out / "model")
    AutoTokenizer.from_pretrained(model).save_pretrained(out / "model")
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
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"packed {out}: {total / 2**20:.1f} MiB")


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
    packing = commands.add_parser("pack", help="model (fp16) and reviews (xz) into OUT")
    packing.add_argument("out", type=Path)
    packing.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2")
    packing.add_argument("--dataset", default="../shared/imdb")
    unpacking = commands.add_parser("unpack", help="packed reviews into a Hub-layout folder")
    unpacking.add_argument("source", type=Path)
    unpacking.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.out, args.model, args.dataset)
    else:
        unpack(args.source, args.out)


if __name__ == "__main__":
    main()
