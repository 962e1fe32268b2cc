"""Loading Hugging Face models and tokenizers from a Hub id or a local folder, with clear errors."""

from pathlib import Path

from safetensors import SafetensorError
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from bert_imdb.errors import UserError
from bert_imdb.sources import looks_like_path


def check_model_source(name: str) -> None:
    """Fail early, with a fix, when `name` is meant as a local folder but is not a usable one."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                f"model folder {name} has no config.json: point model_name_or_path at a folder "
                "written by save_pretrained, or at a Hub id such as bert-base-uncased"
            )
    elif path.exists():
        raise UserError(
            f"model path {name} is a file, not a folder: point it at the folder that holds config.json"
        )
    elif looks_like_path(name):
        raise UserError(
            f"model path {name} does not exist: check the path, or use a Hub id such as bert-base-uncased"
        )


def from_pretrained(auto_class, name: str, **kwargs):
    """`auto_class.from_pretrained(name, **kwargs)`, with a one-line error when it cannot be loaded."""
    check_model_source(name)
    try:
        return auto_class.from_pretrained(name, **kwargs)
    except OSError as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(
            f"cannot load {name!r} ({reason}); offline, point model_name_or_path at a local model folder"
        ) from err
    except (ValueError, RuntimeError, SafetensorError) as err:
        # A truncated weights file (SafetensorError), an unknown model type (ValueError), weights of
        # other shapes (RuntimeError): the folder is there, but not a model this can load.
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load model folder {name} ({reason}): its files may be truncated or of another kind of "
            "model; download it again, or point model_name_or_path at another"
        ) from err


def attention_settings(attention_dropout: float | None, attn_implementation: str) -> dict:
    """The from_pretrained arguments for the attention: its implementation, and its dropout (None keeps the
    checkpoint's own)."""
    if attention_dropout is not None and not 0 <= attention_dropout < 1:
        raise UserError(
            f"model.attention_dropout={attention_dropout} must lie in [0, 1), e.g. 0 or 0.1, or be null for the "
            "model's own"
        )
    dropout = {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    return {"attn_implementation": attn_implementation, **dropout}


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    return from_pretrained(AutoTokenizer, name)


# The fewest tokens per review that leave room for text beside the special tokens, at every truncation.
MIN_MAX_LENGTH = 8


def check_max_length(name: str, max_length: int) -> None:
    """Fail early when sequences of `max_length` tokens would not fit the model's position embeddings."""
    if max_length < MIN_MAX_LENGTH:
        raise UserError(
            f"data.max_length={max_length} is too small: use at least {MIN_MAX_LENGTH}, up to the model's limit"
        )
    limit = getattr(from_pretrained(AutoConfig, name), "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise UserError(
            f"data.max_length={max_length} is above the {limit} tokens {name} can take: set it to {limit} or less"
        )
