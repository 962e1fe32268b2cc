"""The model inputs of a batch, with its padding mask in the form the attention runs on, decided on the host."""

import torch

from bert_imdb.data.collate import LENGTHS


def model_inputs(
    batch: dict,
    names: tuple[str, ...],
    attn_implementation: str,
    dtype: torch.dtype = torch.float32,
    prepare_mask: bool = True,
) -> dict:
    """The tensors of `batch` the model takes (`names`), with the attention mask prepared here.

    Given a 2D padding mask, transformers 5 checks `mask.all()` before SDPA attention (read with 5.24), to
    leave the mask out when nothing is padding: a read of the mask back from the device, so every forward
    pass waits for the GPU. The host already knows: the collator's real lengths say whether the batch holds
    padding. Without padding the mask is left out (and SDPA may run its fastest kernels); with it, it is
    given as the 4D mask transformers would build (True where attended for SDPA, an additive float mask for
    eager attention, in the model's `dtype`: a float32 mask added to bf16 or fp16 scores would turn them
    into float32, which the next matmul with bf16 values refuses), which transformers takes as it is.
    """
    inputs = {key: batch[key] for key in names if key in batch}
    mask, lengths = inputs.get("attention_mask"), batch.get(LENGTHS)
    if mask is None or lengths is None or mask.ndim != 2:
        return inputs
    if all(length == mask.shape[1] for length in lengths):
        del inputs["attention_mask"]
        return inputs
    if not prepare_mask:
        return inputs
    attend = mask[:, None, None, :].bool()
    if attn_implementation == "sdpa":
        inputs["attention_mask"] = attend
    else:
        zero = torch.zeros((), dtype=dtype, device=mask.device)
        inputs["attention_mask"] = torch.where(attend, zero, torch.finfo(dtype).min)
    return inputs
