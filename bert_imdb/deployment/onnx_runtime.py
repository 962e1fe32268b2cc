"""ONNX Runtime in place of PyTorch for `predict`: a session fed a batch by input name."""

from pathlib import Path

import numpy as np
import torch

from bert_imdb.deployment.onnx_export import onnx_modules
from bert_imdb.errors import UserError


class OnnxLogits:
    """Calls an ONNX classifier on the batches the PyTorch model gets, and returns its logits as a tensor.

    Args:
        path: The `.onnx` file (`model.onnx`, or `model.int8.onnx`), written by `export --format onnx`.
        threads: ONNX Runtime's intra-op threads (torch's count, so both runtimes use the same cores).
    """

    def __init__(self, path: str | Path, threads: int):
        _, ort = onnx_modules()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime raises its own classes for a file that is no model
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise UserError(f"{path} cannot be loaded by ONNX Runtime ({first}): export it again") from None
        self.inputs = [node.name for node in self.session.get_inputs()]

    def __call__(self, batch: dict) -> torch.Tensor:
        missing = [name for name in self.inputs if name not in batch]
        if missing:
            raise UserError(f"the ONNX model takes {', '.join(missing)}, which the tokenizer does not give")
        feeds = {name: batch[name].cpu().numpy().astype(np.int64) for name in self.inputs}
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(logits)


def check_onnx_predict(subcommand: str, config) -> Path:
    """Check a predict with ONNX Runtime before anything loads, and return the ONNX file: it is in the export
    folder the model starts from (which holds the trained head and calibration), and there is no
    checkpoint."""
    if subcommand != "predict":
        raise UserError(f"--runtime {config.runtime} is for predict: {subcommand} runs with PyTorch")
    if config.ckpt_path is not None:
        raise UserError(
            "--runtime onnxruntime runs an export, not a checkpoint: pass the export folder as "
            "--model.model_name_or_path, without --ckpt_path"
        )
    devices, accelerator = config.trainer.get("devices"), config.trainer.get("accelerator")
    if devices not in (None, 1, "1", "auto") or accelerator not in (None, "cpu", "auto"):
        raise UserError(
            "--runtime onnxruntime runs in one process on the CPU: set --trainer.accelerator cpu --trainer.devices 1"
        )
    onnx_file = Path(config.model.init_args.model_name_or_path) / config.onnx_file
    if not onnx_file.is_file():
        raise UserError(
            f"{onnx_file.parent} has no {config.onnx_file}: write it with bert-imdb export --format onnx, and "
            "pass that export folder as --model.model_name_or_path"
        )
    config.trainer.accelerator, config.trainer.devices = "cpu", 1
    return onnx_file
