"""`python -m bert_imdb export`: a classifier or MLM checkpoint to a Hugging Face model folder."""

from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from bert_imdb.checkpoints.loading import load_checkpoint
from bert_imdb.errors import UserError
from bert_imdb.models.pretrained import load_tokenizer
from bert_imdb.reporting.model_card import model_card
from bert_imdb.tasks import data_module_state, module_of_checkpoint


@rank_zero_only
def export(*, ckpt_path: str, output_dir: str, overwrite: bool = False) -> None:
    """Write a checkpoint as a Hugging Face model folder: safetensors weights, config and tokenizer.

    A classifier checkpoint becomes a sequence-classification model with id2label {0: neg, 1: pos}, for
    `pipeline("text-classification", model=output_dir)`; an MLM checkpoint becomes a masked-LM model, for
    `AutoModelForMaskedLM` and for fine-tuning with `--model.model_name_or_path output_dir`. The tokenizer's
    model_max_length is the run's data.max_length, so that pipelines truncate as the run did.

    Args:
        ckpt_path: A checkpoint written by `python -m bert_imdb fit`.
        output_dir: The folder to write; it must be new or empty unless overwrite is set.
        overwrite: Write into a folder that already has files, replacing the model files in it.
    """
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{output_dir} is a file: pass a folder (new or empty) as --output_dir")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"{output_dir} exists and is not empty: pass another --output_dir, or --overwrite true"
        )
    checkpoint = load_checkpoint(ckpt_path)
    module_class = module_of_checkpoint(checkpoint, ckpt_path)
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    module = module_class(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    tokenizer = load_tokenizer(hparams["model_name_or_path"])
    max_length = checkpoint.get("datamodule_hyper_parameters", {}).get("max_length")
    if max_length is not None:
        tokenizer.model_max_length = max_length
    module.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    card = model_card(module_class, checkpoint, ckpt_path, data_module_state(checkpoint))
    (out / "README.md").write_text(card, encoding="utf-8")
    rank_zero_info(f"Exported {module_class.__name__} checkpoint {ckpt_path} to {out}")
