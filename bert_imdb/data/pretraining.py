"""IMDb text for BERT pre-training: reviews from train and unsupervised (never test), tokenized once, cut
into blocks (or one review per example, or next-sentence-prediction pairs), and masked as BERT was."""

import random
import re
from itertools import chain
from typing import Literal

import lightning as L
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorForTokenClassification,
    PreTrainedTokenizerBase,
)

from bert_imdb.data.collate import LENGTHS, MASKED_INDEX, scored_positions, with_host_counts
from bert_imdb.data.device_defaults import eval_batch, run_device
from bert_imdb.data.imdb import load_imdb_text
from bert_imdb.data.samplers import EvaluationSampler, shuffled_sampler
from bert_imdb.data.workers import worker_start_method
from bert_imdb.errors import UserError, check_at_least
from bert_imdb.models.pretrained import check_max_length, load_tokenizer

HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)  # IMDb reviews carry HTML line breaks
SENTENCE_ENDS = (".", "!", "?")
MAP_BATCH = 1000


def tokenize_reviews(
    batch: dict,
    tokenizer: PreTrainedTokenizerBase,
    special_tokens: bool,
    max_length: int | None,
    offsets: bool,
) -> dict:
    """The `datasets.map` tokenization: module level and stateless, so its cache is found again.

    The special-tokens mask keeps [CLS]/[SEP] inside concatenated blocks from being masked; the character
    offsets are what whole-word masking uses to tell which word pieces belong together.
    """
    return tokenizer(
        [HTML_BREAK.sub(" ", text) for text in batch["text"]],
        add_special_tokens=special_tokens,
        truncation=max_length is not None,
        max_length=max_length,
        return_special_tokens_mask=True,
        return_offsets_mapping=offsets,
        return_attention_mask=False,
        return_token_type_ids=False,
    )


def has_text(row: dict) -> bool:
    return bool(row["text"].strip())


def group_blocks(batch: dict, block_size: int) -> dict:
    """Concatenate the reviews of a batch and cut the result into blocks of exactly `block_size` tokens,
    dropping the remainder, as transformers' run_mlm example does."""
    joined = {column: list(chain.from_iterable(values)) for column, values in batch.items()}
    usable = len(joined["input_ids"]) // block_size * block_size
    return {
        column: [values[i : i + block_size] for i in range(0, usable, block_size)]
        for column, values in joined.items()
    }


def _sentences(ids: list[int], ends: set[int]) -> list[tuple[int, int]]:
    """(start, end) token spans of the sentences of a review: each ends after its last '.', '!' or '?'."""
    spans, start = [], 0
    for i, token in enumerate(ids):
        if token in ends and (i + 1 == len(ids) or ids[i + 1] not in ends):
            spans.append((start, i + 1))
            start = i + 1
    if start < len(ids):
        spans.append((start, len(ids)))
    return spans


def _fit(a: int, b: int, budget: int) -> tuple[int, int]:
    """Lengths of segments A and B cut to `budget` tokens together, the longer one first."""
    while a + b > budget:
        if a >= b:
            a -= 1
        else:
            b -= 1
    return a, b


def sentence_pairs(
    batch: dict, indices: list[int], max_length: int, cls_id: int, sep_id: int, end_ids: list[int], seed: int
) -> dict:
    """Next-sentence-prediction examples: [CLS] A [SEP] B [SEP], where A is one or more consecutive
    sentences of a review and B, half of the time, the sentences that follow (label 0) and otherwise
    sentences from another review of the batch (label 1), as in BERT's create_pretraining_data.

    Written by hand because transformers ships no maintained NSP dataset builder. Seeded from the batch's
    first index, so the pairs are the same on every run and every rank.
    """
    rng = random.Random(seed * 1_000_003 + indices[0])
    ends, budget = set(end_ids), max_length - 3
    reviews = [_sentences(ids, ends) for ids in batch["input_ids"]]
    donors = [r for r, spans in enumerate(reviews) if spans]
    offsets = batch.get("offset_mapping")
    out = {"input_ids": [], "token_type_ids": [], "special_tokens_mask": [], "next_sentence_label": []}
    if offsets is not None:
        out["offset_mapping"] = []

    def length(spans):
        return sum(end - start for start, end in spans)

    for r, spans in enumerate(reviews):
        i = 0
        while i < len(spans) - 1:
            j = i + 1  # A is spans[i:j]: sentences up to half the budget, leaving at least one for B
            while j < len(spans) - 1 and length(spans[i : j + 1]) <= budget // 2:
                j += 1
            if len(donors) > 1 and rng.random() < 0.5:
                source = r
                while source == r:
                    source = rng.choice(donors)
                b_spans, label, following = reviews[source][rng.randrange(len(reviews[source])) :], 1, j
            else:
                source, b_spans, label = r, spans[j:], 0
            a_len = length(spans[i:j])
            m = 1
            while m < len(b_spans) and a_len + length(b_spans[: m + 1]) <= budget:
                m += 1
            if label == 0:
                following = j + m
            a_len, b_len = _fit(a_len, length(b_spans[:m]), budget)
            a_start, b_start = spans[i][0], b_spans[0][0]
            a_ids = batch["input_ids"][r][a_start : a_start + a_len]
            b_ids = batch["input_ids"][source][b_start : b_start + b_len]
            out["input_ids"].append([cls_id, *a_ids, sep_id, *b_ids, sep_id])
            out["token_type_ids"].append([0] * (a_len + 2) + [1] * (b_len + 1))
            out["special_tokens_mask"].append([1] + [0] * a_len + [1] + [0] * b_len + [1])
            out["next_sentence_label"].append(label)
            if offsets is not None:
                a_off = offsets[r][a_start : a_start + a_len]
                b_off = offsets[source][b_start : b_start + b_len]
                out["offset_mapping"].append([(0, 0), *a_off, (0, 0), *b_off, (0, 0)])
            i = following
    return out


class MaskingCollator:
    """transformers' DataCollatorForLanguageModeling (80% [MASK], 10% random token, 10% unchanged), plus
    the padding of `offset_mapping` that whole-word masking reads and `tokenizer.pad` cannot pad."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mlm_probability: float,
        whole_word_mask: bool,
    ):
        self.collate = DataCollatorForLanguageModeling(
            tokenizer,
            mlm_probability=mlm_probability,
            whole_word_mask=whole_word_mask,
            # transformers masks whole words with [MASK] only; said here so that it does not warn.
            mask_replace_prob=1.0 if whole_word_mask else 0.8,
            random_replace_prob=0.0 if whole_word_mask else 0.1,
        )

    def __call__(self, features: list[dict]) -> dict:
        """Pad and mask, with this process's torch generator."""
        return with_host_counts(self.collate(_with_padded_offsets(features)), features)

    def pad(self, features: list[dict]) -> dict:
        """Pad only, keeping what masking reads (special_tokens_mask, offset_mapping): the training loader's
        collation, in DataLoader workers."""
        batch = self.collate.tokenizer.pad(_with_padded_offsets(features), return_tensors="pt")
        batch[LENGTHS] = [len(f["input_ids"]) for f in features]
        return dict(batch)

    def mask(self, batch: dict) -> dict:
        """Mask a padded batch with the torch generator of this process: the training batches, in the main
        process. A DataLoader worker's generator is in no checkpoint, so masks drawn there would differ
        after a resume mid-epoch; the main process's is restored exactly, and masks no longer depend on the
        number of workers."""
        batch["input_ids"], batch["labels"] = self.collate.torch_mask_tokens(
            batch["input_ids"], batch.pop("special_tokens_mask"), batch.pop("offset_mapping", None)
        )
        batch[MASKED_INDEX] = scored_positions(batch["labels"])
        return batch


def _with_padded_offsets(features: list[dict]) -> list[dict]:
    """The features with `offset_mapping`, which whole-word masking reads and `tokenizer.pad` cannot pad,
    padded to the longest example."""
    if "offset_mapping" not in features[0]:
        return features
    longest = max(len(f["input_ids"]) for f in features)
    return [
        {**f, "offset_mapping": [*f["offset_mapping"], *[(0, 0)] * (longest - len(f["input_ids"]))]}
        for f in features
    ]


class FixedMaskCollator:
    """Validation batches, whose masks were drawn once: transformers' DataCollatorForTokenClassification pads
    the input ids with [PAD] and the fixed labels with -100."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.collate = DataCollatorForTokenClassification(tokenizer)

    def __call__(self, features: list[dict]) -> dict:
        return with_host_counts(self.collate(features), features)


def mask_once(
    batch: dict,
    indices: list[int],
    tokenizer: PreTrainedTokenizerBase,
    mlm_probability: float,
    whole_word_mask: bool,
    seed: int,
) -> dict:
    """Masks for validation, drawn once with a fixed seed and cached: the same tokens are masked in every
    epoch and every run, so validation perplexities can be compared."""
    # The process's generator, seeded for this batch and put back after: the collator's own `seed` refuses
    # to draw in any process but the main one outside a DataLoader (a forked or spawned DDP rank).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + indices[0])
        collate = MaskingCollator(tokenizer, mlm_probability, whole_word_mask)
        masked = collate([dict(zip(batch, row, strict=True)) for row in zip(*batch.values(), strict=True)])
    lengths = [len(ids) for ids in batch["input_ids"]]
    out = {
        column: [row[:n] for row, n in zip(masked[column].tolist(), lengths, strict=True)]
        for column in ("input_ids", "labels")
    }
    for column in ("token_type_ids", "next_sentence_label"):
        if column in batch:
            out[column] = batch[column]
    return out


class IMDbPretrainingDataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: str = "stanfordnlp/imdb",
        tokenizer_name_or_path: str = "bert-base-uncased",
        max_length: int = 512,
        line_by_line: bool = False,
        nsp: bool = False,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        batch_size: int = 32,
        eval_batch_size: int | Literal["auto"] = "auto",
        val_reviews: int = 1000,
        max_train_reviews: int | None = None,
        num_workers: int = 0,
        seed: int = 42,
    ):
        """IMDb review text (train and unsupervised splits, never test) for masked language modelling.

        Args:
            dataset: Hub id, local folder laid out like stanfordnlp/imdb, or an extracted aclImdb/ folder.
            tokenizer_name_or_path: Tokenizer to use; linked to model.model_name_or_path by the CLI.
            max_length: Tokens per example: the block size, or the truncation length per review or pair.
            line_by_line: One review per example (truncated) instead of concatenated blocks of max_length.
            nsp: Build next-sentence-prediction pairs instead; linked to model.nsp by the CLI.
            mlm_probability: Share of tokens (of words, with whole_word_mask) selected for prediction.
            whole_word_mask: Select whole words: all the word pieces of a word are masked together.
            batch_size: Training examples per batch (per device).
            eval_batch_size: Validation examples per batch (per device); "auto": 8 on CPUs, 64 on accelerators.
            val_reviews: Reviews held out for validation, the first of the seeded shuffle; their masks are
                drawn once, so validation perplexity compares across epochs and runs.
            max_train_reviews: Pre-train on the next N reviews of that shuffle (all the others when unset).
            num_workers: DataLoader worker processes.
            seed: Seed of the shuffle, the validation masks and the NSP pairs; linked to seed_everything.
        """
        super().__init__()
        if not 0 < mlm_probability < 1:
            raise UserError(f"data.mlm_probability={mlm_probability} must lie between 0 and 1, e.g. 0.15")
        if nsp and line_by_line:
            raise UserError("data.line_by_line does not apply to NSP, which builds sentence pairs: unset one")
        for name, value in (("batch_size", batch_size), ("val_reviews", val_reviews)):
            check_at_least(f"data.{name}", value, 1)
        if eval_batch_size != "auto":
            check_at_least("data.eval_batch_size", eval_batch_size, 1)
        check_at_least("data.max_train_reviews", max_train_reviews, 1, unset=True)
        check_at_least("data.num_workers", num_workers, 0)
        check_max_length(tokenizer_name_or_path, max_length)
        # Not LightningCLI's `_instantiator`: how the CLI built it, no hyperparameter (hparams.yaml, checkpoints).
        self.save_hyperparameters(ignore="_instantiator")
        self.tokenizer = load_tokenizer(tokenizer_name_or_path)
        if whole_word_mask and not self.tokenizer.is_fast:
            # Words are told apart by the offsets of their pieces, which only fast (Rust) tokenizers give.
            raise UserError(
                f"data.whole_word_mask needs a fast tokenizer (character offsets), and {tokenizer_name_or_path} "
                "has only a slow one: add its tokenizer.json, or set data.whole_word_mask false"
            )
        # Fresh masks for every training batch, from the main process's generator, which seed_everything
        # seeds and checkpoints keep (resume/exact_resume.py).
        self.masking = MaskingCollator(self.tokenizer, mlm_probability, whole_word_mask)
        self.datasets: dict[str, Dataset] = {}

    def _examples(self, reviews: Dataset, split: str) -> Dataset:
        hp, tokenizer = self.hparams, self.tokenizer
        blocks = not (hp.line_by_line or hp.nsp)
        tokenized = reviews.map(
            tokenize_reviews,
            batched=True,
            batch_size=MAP_BATCH,
            remove_columns=["text"],
            fn_kwargs={
                "tokenizer": tokenizer,
                "special_tokens": not hp.nsp,
                "max_length": hp.max_length if hp.line_by_line else None,
                "offsets": hp.whole_word_mask,
            },
            desc=f"Tokenizing {split}",
        )
        if hp.nsp:
            examples = tokenized.map(
                sentence_pairs,
                batched=True,
                batch_size=MAP_BATCH,
                with_indices=True,
                remove_columns=tokenized.column_names,
                fn_kwargs={
                    "max_length": hp.max_length,
                    "cls_id": tokenizer.cls_token_id,
                    "sep_id": tokenizer.sep_token_id,
                    "end_ids": tokenizer.convert_tokens_to_ids(list(SENTENCE_ENDS)),
                    "seed": hp.seed,
                },
                desc=f"Sentence pairs for {split}",
            )
        elif blocks:
            examples = tokenized.map(
                group_blocks,
                batched=True,
                batch_size=MAP_BATCH,
                fn_kwargs={"block_size": hp.max_length},
                desc=f"Blocks of {hp.max_length} tokens for {split}",
            )
        else:
            examples = tokenized
        if len(examples) == 0:
            made = "NSP pairs (reviews need two sentences)" if hp.nsp else f"{hp.max_length}-token blocks"
            raise UserError(
                f"no {split} text left: {len(reviews)} reviews make no {made}; lower data.max_length or "
                f"give it more reviews (data.{'val_reviews' if split == 'val' else 'max_train_reviews'})"
            )
        if split == "train":
            return examples
        return examples.map(
            mask_once,
            batched=True,
            batch_size=MAP_BATCH,
            with_indices=True,
            remove_columns=examples.column_names,
            fn_kwargs={
                "tokenizer": tokenizer,
                "mlm_probability": hp.mlm_probability,
                "whole_word_mask": hp.whole_word_mask,
                "seed": hp.seed,
            },
            desc="Masking validation once",
        )

    def _prepared(self, names: list[str]) -> dict[str, Dataset]:
        hp = self.hparams
        reviews = load_imdb_text(hp.dataset).filter(has_text, desc="Dropping empty reviews")
        if len(reviews) <= hp.val_reviews:
            raise UserError(
                f"{hp.dataset} has {len(reviews)} non-empty reviews, not more than data.val_reviews="
                f"{hp.val_reviews}: lower data.val_reviews"
            )
        shuffled = reviews.shuffle(seed=hp.seed)
        end = len(shuffled) if hp.max_train_reviews is None else hp.val_reviews + hp.max_train_reviews
        subsets = {
            "val": lambda: shuffled.select(range(hp.val_reviews)),
            "train": lambda: shuffled.select(range(hp.val_reviews, min(end, len(shuffled)))),
        }
        return {name: self._examples(subsets[name](), name) for name in names}

    def prepare_data(self) -> None:
        # Once per node, before setup: fills the datasets cache that setup then only reads.
        self._prepared(["train", "val"])

    def setup(self, stage: str) -> None:
        if stage not in ("fit", "validate"):
            raise UserError(
                f"pre-training has no {stage} stage: fit and validate it, export it, then {stage} a classifier"
            )
        self.datasets.update(self._prepared(["train", "val"] if stage == "fit" else ["val"]))

    def _device(self) -> torch.device:
        return run_device(self.trainer)

    def _on_gpu(self) -> bool:
        return self._device().type == "cuda"

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Training batches come padded, not yet masked (validation batches carry their fixed masks).
        if "special_tokens_mask" not in batch:
            return batch
        batch = self.masking.mask(batch)
        if self._on_gpu():
            # Masking made new tensors after the loader pinned its batch: page-locked, they copy to the GPU
            # without the host waiting for the copy.
            batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return batch

    def state_dict(self) -> dict:
        # Kept in checkpoints by Lightning: export writes the sizes into the model card.
        return {split: len(self.datasets[split]) for split in ("train", "val") if split in self.datasets}

    def train_dataloader(self) -> DataLoader:
        # Stateful: a run resumed from a mid-epoch checkpoint goes on with the batches it had not seen.
        return StatefulDataLoader(
            self.datasets["train"],
            batch_size=self.hparams.batch_size,
            sampler=shuffled_sampler(self.datasets["train"], self.trainer, self.hparams.seed),
            # Padded in the workers, masked in the main process (on_before_batch_transfer).
            collate_fn=self.masking.pad,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            multiprocessing_context=worker_start_method(self.hparams.num_workers),
            pin_memory=self._on_gpu(),
        )

    def val_dataloader(self) -> DataLoader:
        return StatefulDataLoader(
            self.datasets["val"],
            batch_size=eval_batch(self.hparams.eval_batch_size, self._device()),
            # Every block once over all processes: perplexity and accuracy count none twice.
            sampler=EvaluationSampler(
                len(self.datasets["val"]),
                num_replicas=self.trainer.world_size if self.trainer else 1,
                rank=self.trainer.global_rank if self.trainer else 0,
            ),
            collate_fn=FixedMaskCollator(self.tokenizer),
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            multiprocessing_context=worker_start_method(self.hparams.num_workers),
            # Page-locked batches copy to a GPU without the host waiting for the copy.
            pin_memory=self._on_gpu(),
        )
