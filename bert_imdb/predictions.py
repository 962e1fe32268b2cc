"""Writes `predict` results to a CSV or JSONL file as batches come out, in input order."""

import csv
import json
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from bert_imdb.errors import UserError

COLUMNS = ["id", "label", "probability", "pos_probability"]


class PredictionWriter(BasePredictionWriter):
    def __init__(self, output_file: str | None = None, overwrite: bool = False):
        """Where `predict` writes its rows: id, label (neg/pos), probability of that label, probability of pos.

        Args:
            output_file: A .csv or .jsonl path; by default predictions.csv in the run's log folder.
            overwrite: Replace `output_file` if it exists (off: an existing file is an error).
        """
        super().__init__(write_interval="batch")
        if output_file is not None and Path(output_file).suffix not in (".csv", ".jsonl"):
            raise UserError(f"predictions.output_file={output_file} must end in .csv or .jsonl")
        self.output_file, self.overwrite = output_file, overwrite
        self.path: Path | None = None
        self.rows = 0

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path = Path(self.output_file or Path(trainer.log_dir) / "predictions.csv")
        if self.path.exists() and not self.overwrite:
            raise UserError(
                f"{self.path} exists: pass another --predictions.output_file, or --predictions.overwrite true"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Rows go to a .partial file that becomes the output only once complete: a crashed or killed run
        # never leaves a truncated file that looks finished.
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._file = self._partial.open("w", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._file, COLUMNS) if self.path.suffix == ".csv" else None
        if self._csv:
            self._csv.writeheader()
        self.rows = 0

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        for row in zip(*(prediction[column] for column in COLUMNS), strict=True):
            record = dict(zip(COLUMNS, row, strict=True))
            if self._csv:
                self._csv.writerow(record)
            else:
                self._file.write(json.dumps(record) + "\n")
        self.rows += len(prediction["id"])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._file.close()
        self._partial.replace(self.path)
        rank_zero_info(f"Wrote {self.rows} predictions to {self.path}")
