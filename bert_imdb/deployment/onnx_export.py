"""An exported classifier as ONNX: `model.onnx` (and `model.int8.onnx`, dynamic int8) beside its
tokenizer, for ONNX Runtime.

The graph's inputs carry the names of the model's forward arguments (`input_ids`, `attention_mask`, and
`token_type_ids` where the architecture has them), with dynamic batch and sequence axes; its one output is
`logits`, calibrated (the export folds the temperature into them). ONNX Runtime is fed by those names,
never by position: a graph whose inputs came in another order would otherwise run and answer wrongly.
"""

import contextlib
import io
from pathlib import Path

import torch

from bert_imdb.errors import UserError
from bert_imdb.models.pretrained import accepted_inputs

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# The opset torch's exporter targets by default in torch 2.13, and ONNX Runtime 1.20 and later run.
OPSET = 18


def onnx_modules():
    """onnx and onnxruntime, or one line saying how to install them (they are an extra, not a dependency)."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise UserError(
            'ONNX needs the onnx extra: pip install -e ".[onnx]" (onnx, onnxscript and onnxruntime)'
        ) from None
    return onnx, onnxruntime


def graph_inputs(model, tokenizer) -> tuple[str, ...]:
    """The inputs the model's forward takes and its tokenizer gives."""
    return tuple(name for name in accepted_inputs(model, TOKEN_INPUTS) if name in tokenizer.model_input_names)


def write_onnx(model, tokenizer, folder: Path, int8: bool) -> list[Path]:
    """Write `model` (a sequence classifier) into `folder` as ONNX, and its dynamic int8 quantization where
    asked; the files written."""
    onnx_modules()
    names = graph_inputs(model, tokenizer)
    # Two reviews of different lengths: padding in the sample, so the traced graph masks as it must.
    sample = tokenizer(
        ["a sample review", "a second, longer sample review here"], padding=True, return_tensors="pt"
    )
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    target = folder / ONNX_FILE
    model = model.eval()
    # The exporter prints its progress lines to stdout; its warnings stay.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            model,
            (),
            str(target),
            kwargs={name: sample[name] for name in names},
            input_names=list(names),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
    written = [target]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # Weights of the matrix products in int8, one scale per output channel, activations quantized at
        # run time: ONNX Runtime's own dynamic quantization, after its recommended pre-processing. Its
        # defaults (one scale per tensor, every op) changed 8.6% of a fine-tuned MiniLM's labels and cost
        # 2.7 points of accuracy; per channel, on MatMul only: 1.2% and 0.4 points
        # (benchmarks/results/README.md#onnx-runtime).
        prepared = folder / "model.prepared.onnx"
        try:
            quant_pre_process(str(target), str(prepared), skip_symbolic_shape=True)
            quantize_dynamic(
                str(prepared),
                str(folder / INT8_FILE),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        finally:
            prepared.unlink(missing_ok=True)
        written.append(folder / INT8_FILE)
    return written


def onnx_card_section(files: list[str], inputs: tuple[str, ...]) -> str:
    """The model card's section on the ONNX files: what they take and how to run them."""
    feeds = ", ".join(f'"{name}": encoded["{name}"]' for name in inputs)
    return f"""
## ONNX

{", ".join(f"`{name}`" for name in files)}: inputs {", ".join(f"`{name}`" for name in inputs)} (int64, batch x
sequence, both dynamic), output `logits` (calibrated). Feed them by name:

```python
import onnxruntime, transformers
tokenizer = transformers.AutoTokenizer.from_pretrained(".")
session = onnxruntime.InferenceSession("{files[0]}")
encoded = tokenizer(["A wonderful film."], return_tensors="np", padding=True, truncation=True)
logits = session.run(["logits"], {{{feeds}}})[0]
```
"""
