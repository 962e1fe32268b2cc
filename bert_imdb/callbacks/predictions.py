"""Writes `predict` results to a CSV or JSONL file as batches come out, in input order, from any number
of processes."""

import csv
import heapq
import json
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from bert_imdb.distributed import TimedGroup
from bert_imdb.errors import UserError

COLUMNS = ["id", "label", "probability", "pos_probability"]


class PredictionWriter(BasePredictionWriter):
    def __init__(
        self, output_file: str | None = None, overwrite: bool = False, barrier_timeout: float = 1800
    ):
        """Where `predict` writes its rows: id, label (neg/pos), probability of that label, probability of pos.

        Args:
            output_file: A .csv or .jsonl path; by default predictions.csv in the run's log folder.
            overwrite: Replace `output_file` if it exists (off: an existing file is an error).
            barrier_timeout: Seconds a process waits for the others at the end (each writes its part); one
                that has not arrived by then is named, and the run ends.
        """
        super().__init__(write_interval="batch")
        if output_file is not None and Path(output_file).suffix not in (".csv", ".jsonl"):
            raise UserError(f"predictions.output_file={output_file} must end in .csv or .jsonl")
        if barrier_timeout <= 0:
            raise UserError(f"predictions.barrier_timeout={barrier_timeout} must be above 0 (seconds)")
        self.output_file, self.overwrite, self.barrier_timeout = output_file, overwrite, barrier_timeout
        self._barrier: TimedGroup | None = None
        self.path: Path | None = None
        self._file = None
        self._claimed = False
        self.rows = 0

    def _output(self) -> Path:
        """Where the merged output is written until it is complete."""
        return self.path.with_name(self.path.name + ".partial")

    def _part(self, rank: int) -> Path:
        return self.path.with_name(f"{self.path.name}.rank{rank}.partial")

    # setup and teardown, not on_predict_start/end: Lightning skips those on a process that has no batch
    # (a file with fewer batches than processes), and the others would wait for it at the barrier.
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        # Rank 0 names the file: other ranks' loggers may not know the run folder's version.
        default = Path(trainer.log_dir or ".") / "predictions.csv"
        self.path = Path(trainer.strategy.broadcast(str(self.output_file or default)))
        if self.path.exists() and not self.overwrite:
            raise UserError(
                f"{self.path} exists: pass another --predictions.output_file, or --predictions.overwrite true"
            )
        # Rank 0 claims the output's .partial name by creating it: a second predict writing the same file
        # at once stops here instead of sharing its parts.
        claimed = True
        if trainer.is_global_zero:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._output().open("x").close()
            except FileExistsError:
                claimed = False
            except OSError as err:
                raise self._cannot_write(err) from err
        if not trainer.strategy.broadcast(claimed):
            raise UserError(
                f"{self._output()} exists: another predict is writing {self.path} (wait for it), or one was "
                "killed (delete that file), or pass another --predictions.output_file"
            )
        self._claimed = trainer.is_global_zero
        # Each process writes its rows, with their positions in the input, to its own part; the output
        # appears under its name only once complete, so a crashed or killed run never leaves a truncated
        # file that looks finished.
        try:
            self._file = self._part(trainer.global_rank).open("w", encoding="utf-8")
        except OSError as err:
            raise self._cannot_write(err) from err
        self.rows = 0
        self._barrier = TimedGroup(trainer, self.barrier_timeout, "--predictions.barrier_timeout")

    def _cannot_write(self, err: OSError) -> UserError:
        return UserError(
            f"cannot write predictions to {self.path} ({err.strerror or err}): free space there, or pass "
            "--predictions.output_file on a writable disk"
        )

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        try:
            for row in zip(prediction["index"], *(prediction[column] for column in COLUMNS), strict=True):
                self._file.write(json.dumps(row) + "\n")
        except OSError as err:  # a disk that filled up: on_exception clears the parts
            raise self._cannot_write(err) from err
        self.rows += len(prediction["id"])

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        self._file.close()
        self._barrier.wait("the end of predict")  # every part is complete
        if trainer.is_global_zero:
            try:
                self._merge([self._part(rank) for rank in range(trainer.world_size)])
            except OSError as err:
                self.on_exception(trainer, None, err)
                raise self._cannot_write(err) from err
        self._barrier.wait("the end of the merge of the predictions")

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # A failed predict leaves no part behind (and never an output file).
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._file is not None:
            # Rank 0 also clears the other ranks' parts, which a failed merge leaves.
            ranks = range(trainer.world_size) if trainer.is_global_zero else [trainer.global_rank]
            for rank in ranks:
                self._part(rank).unlink(missing_ok=True)
        if self._claimed:
            self._output().unlink(missing_ok=True)
            self._claimed = False

    def _merge(self, parts: list[Path]) -> None:
        """Interleave the parts by input position (each is in order already), streaming, into the output."""
        partial = self._output()
        handles = [part.open(encoding="utf-8") for part in parts]
        rows = heapq.merge(*((json.loads(line) for line in handle) for handle in handles))
        written = 0
        with partial.open("w", encoding="utf-8", newline="") as out:
            table = csv.writer(out) if self.path.suffix == ".csv" else None
            if table:
                table.writerow(COLUMNS)
            for _, *values in rows:
                if table:
                    table.writerow(values)
                else:
                    out.write(json.dumps(dict(zip(COLUMNS, values, strict=True))) + "\n")
                written += 1
        for handle, part in zip(handles, parts, strict=True):
            handle.close()
            part.unlink()
        partial.replace(self.path)
        self._claimed = False
        rank_zero_info(f"Wrote {written} predictions to {self.path}")
