"""IMDbDataModule: IMDb reviews tokenized once, in length-grouped training batches and sorted evaluation
batches, for training, validation, test and predict."""

from typing import Literal

import lightning as L
import numpy as np
import torch
from datasets import Dataset
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from bert_imdb.data.collate import CollateWithStrings
from bert_imdb.data.device_defaults import eval_batch, pad_multiple, run_device
from bert_imdb.data.imdb import imdb_subsets
from bert_imdb.data.review_files import ReviewStream, scan_reviews
from bert_imdb.data.samplers import EvaluationSampler, LengthGroupedSampler, shuffled_sampler, token_lengths
from bert_imdb.data.truncation import REVIEW_TOKENS, TRUNCATIONS, tokenize
from bert_imdb.data.workers import worker_start_method
from bert_imdb.errors import UserError, check_at_least
from bert_imdb.models.pretrained import check_max_length, load_tokenizer


class IMDbDataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: str = "stanfordnlp/imdb",
        tokenizer_name_or_path: str = "bert-base-uncased",
        max_length: int = 512,
        truncation: Literal["head", "tail", "head+tail"] = "head+tail",
        pad_to_multiple_of: int | Literal["auto"] | None = "auto",
        batch_size: int = 32,
        max_tokens: int | None = None,
        group_by_length: bool = True,
        eval_batch_size: int | Literal["auto"] = "auto",
        val_fraction: float = 0.1,
        max_train_samples: int | None = None,
        max_val_samples: int | None = None,
        max_test_samples: int | None = None,
        test_min_tokens: int | None = None,
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
            pad_to_multiple_of: Pad each batch to a multiple of this many tokens (at most max_length), so
                batches come in few shapes; "auto": 64 on accelerators (kernels, the caching allocator and
                compiled graphs are then reused: at max_length 512, 8 lengths), none on CPUs (an AVX2 CPU
                trained 5% slower padded to 8; an AMX one as fast padded to 64, with less memory:
                benchmarks/results/README.md); null: none.
            batch_size: Training reviews per batch (per device).
            max_tokens: Instead of batch_size reviews, training batches of as many reviews as fit in this
                many padded tokens (per device): short reviews come in large batches. Needs
                group_by_length; at least max_length.
            group_by_length: Put reviews of similar length in the same training batch (shuffled batches),
                so little of each batch is padding. Evaluation always runs longest reviews first.
            eval_batch_size: Validation, test and predict reviews per batch (per device); "auto": 8 on CPUs
                (faster there than large batches), 64 on accelerators.
            val_fraction: Share of the train split held out for validation; test never picks checkpoints.
            max_train_samples: Train on the first N reviews of the seeded shuffle (all when unset).
            max_val_samples: Validate on the first N held-out reviews (all when unset).
            max_test_samples: Test on the first N reviews of the seeded shuffle of the test split.
            test_min_tokens: Test only the reviews of at least this many tokens before truncation (special
                tokens included). max_length + 1 tests the reviews truncation cuts, the only ones on which
                head, tail and head+tail differ: comparing them takes those reviews alone.
            predict_file: Reviews for `predict`: .txt (one per line), .csv or .jsonl with a text column.
            num_workers: DataLoader worker processes.
            num_proc: Processes that tokenize (datasets.map); one is enough unless the machine has cores
                to spare: the tokenizer is already fast.
            seed: Seed of the shuffles that pick subsets; linked to seed_everything by the CLI.
        """
        super().__init__()
        check_at_least("data.batch_size", batch_size, 1)
        if eval_batch_size != "auto":
            check_at_least("data.eval_batch_size", eval_batch_size, 1)
        for name, value in (
            ("max_train_samples", max_train_samples),
            ("max_val_samples", max_val_samples),
            ("max_test_samples", max_test_samples),
            ("test_min_tokens", test_min_tokens),
            ("num_proc", num_proc),
        ):
            check_at_least(f"data.{name}", value, 1, unset=True)
        check_at_least("data.num_workers", num_workers, 0)
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction={val_fraction} must lie between 0 and 1, e.g. 0.1")
        if truncation not in TRUNCATIONS:
            raise UserError(f"data.truncation={truncation!r} is unknown: use one of {', '.join(TRUNCATIONS)}")
        if isinstance(pad_to_multiple_of, int) and pad_to_multiple_of < 1:
            raise UserError(f"data.pad_to_multiple_of={pad_to_multiple_of} must be at least 1, e.g. 64")
        if max_tokens is not None and not group_by_length:
            raise UserError(
                "data.max_tokens batches reviews by length: set data.group_by_length true, or unset it"
            )
        if max_tokens is not None and max_tokens < max_length:
            raise UserError(
                f"data.max_tokens={max_tokens} cannot hold one review of data.max_length={max_length} tokens: "
                f"raise it to at least {max_length}"
            )
        check_max_length(tokenizer_name_or_path, max_length)
        # Not LightningCLI's `_instantiator`: how the CLI built it, no hyperparameter (hparams.yaml, checkpoints).
        self.save_hyperparameters(ignore="_instantiator")
        # A predict file of fewer batches than processes leaves some with none; they still take part.
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.tokenizer = load_tokenizer(tokenizer_name_or_path)
        self.collate = CollateWithStrings(self.tokenizer, max_length)
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
        splits = {
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
        # Training needs no review lengths before truncation: only evaluation reports accuracy by length.
        if "train" in splits:
            splits["train"] = splits["train"].remove_columns(REVIEW_TOKENS)
        return splits

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
            what = "line" if path.endswith(".txt") else "review"
            skipped = f" ({empty} empty {what}{'s' * (empty != 1)} skipped)" if empty else ""
            rank_zero_info(f"Predicting {reviews} reviews from {path}{skipped}")
            self.datasets["predict"] = ReviewStream(
                path,
                reviews,
                self.tokenizer,
                self.hparams.max_length,
                self.eval_batch(),
                truncation=self.hparams.truncation,
                rank=self.trainer.global_rank if self.trainer else 0,
                world_size=self.trainer.world_size if self.trainer else 1,
                workers=self.hparams.num_workers,
            )
        else:
            splits = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}[stage]
            for name, data in self._tokenized_splits(splits).items():
                if name == "test" and self.hparams.test_min_tokens is not None:
                    data = self._long_reviews(data, self.hparams.test_min_tokens)
                if name != "train":
                    # Longest first: batches of similar length pad little, and running out of memory
                    # shows on the first batch. Metrics do not depend on the order.
                    data = data.select(np.argsort(-token_lengths(data), kind="stable"))
                self.datasets[name] = data

    @staticmethod
    def _long_reviews(data: Dataset, least: int) -> Dataset:
        """The reviews of `data` of at least `least` tokens before truncation (data.test_min_tokens)."""
        tokens = data.with_format("arrow")[REVIEW_TOKENS].to_numpy()
        keep = np.flatnonzero(tokens >= least)
        if len(keep) == 0:
            raise UserError(
                f"data.test_min_tokens={least} leaves no test review (the longest has {tokens.max()} "
                "tokens): lower it, or unset it to test them all"
            )
        rank_zero_info(f"Testing the {len(keep)} of {len(data)} test reviews of at least {least} tokens")
        return data.select(keep)

    def _device(self) -> torch.device:
        return run_device(self.trainer)

    def pad_multiple(self) -> int | None:
        """data.pad_to_multiple_of, with "auto" resolved for the device the run trains on."""
        return pad_multiple(self.hparams.pad_to_multiple_of, self._device())

    def eval_batch(self) -> int:
        """data.eval_batch_size, with "auto" resolved for the device the run evaluates on."""
        return eval_batch(self.hparams.eval_batch_size, self._device())

    def _loader(self, split: str, batch_size: int | None, sampler=None) -> DataLoader:
        # Stateful: Lightning saves how far through the epoch it is, so a run resumed from a mid-epoch
        # checkpoint goes on with the batches it had not seen, in the same order.
        self.collate.multiple = self.pad_multiple()
        return StatefulDataLoader(
            self.datasets[split],
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=self.collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            multiprocessing_context=worker_start_method(self.hparams.num_workers),
            # Page-locked batches copy to a GPU without the host waiting for the copy.
            pin_memory=self._device().type == "cuda",
        )

    def state_dict(self) -> dict:
        # Kept in checkpoints by Lightning: export writes the sizes into the model card, and a resume must
        # pad as the run did (resume/rules.py).
        sizes = {split: len(self.datasets[split]) for split in ("train", "val") if split in self.datasets}
        return {**sizes, "pad_to_multiple_of": self.pad_multiple()}

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if self.trainer is not None and self.trainer.overfit_batches > 0:
            # Lightning overfits on the first batches in order: it swaps any other sampler for a sequential
            # one, which would hand a batch sampler's loader single reviews.
            return self._loader("train", hp.batch_size)
        if not hp.group_by_length:
            sampler = shuffled_sampler(self.datasets["train"], self.trainer, hp.seed)
            return self._loader("train", hp.batch_size, sampler=sampler)
        sampler = LengthGroupedSampler(
            token_lengths(self.datasets["train"]),
            hp.batch_size,
            num_replicas=self.trainer.world_size if self.trainer else 1,
            rank=self.trainer.global_rank if self.trainer else 0,
            seed=hp.seed,
            max_tokens=hp.max_tokens,
            pad_to_multiple_of=self.pad_multiple(),
            max_length=hp.max_length,
        )
        # The sampler hands out whole batches (of varying size, with max_tokens).
        return self._loader("train", None, sampler=sampler)

    def _evaluation_loader(self, split: str) -> DataLoader:
        if self.trainer is not None and self.trainer.overfit_batches > 0:
            return self._loader(split, self.eval_batch())  # in order, as Lightning would make it
        sampler = EvaluationSampler(
            len(self.datasets[split]),
            num_replicas=self.trainer.world_size if self.trainer else 1,
            rank=self.trainer.global_rank if self.trainer else 0,
        )
        return self._loader(split, self.eval_batch(), sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", self.eval_batch())
