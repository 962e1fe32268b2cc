"""Loading Hugging Face models and tokenizers from a Hub id or a local folder, with clear errors."""

import inspect
import json
import logging
from pathlib import Path

from safetensors import SafetensorError
from transformers import (
    MODEL_FOR_MASKED_LM_MAPPING,
    AutoConfig,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from bert_imdb.errors import UserError
from bert_imdb.sources import looks_like_path

log = logging.getLogger(__name__)


def check_model_source(name: str) -> None:
    """Fail early, with a fix, when `name` is meant as a local folder but is not a usable one."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                f"model folder {name} has no config.json: point model_name_or_path at a folder "
                "written by save_pretrained, or at a Hub id such as bert-base-uncased"
            )
        try:
            json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise UserError(
                f"model folder {name}: config.json is not valid JSON ({err}): download or save the model again"
            ) from None
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


def encoder_config(name: str) -> PretrainedConfig:
    """The config of `name`, which must be an encoder: a model type with a masked-LM head in transformers
    (BERT and its descendants), not a decoder or an encoder-decoder."""
    config = from_pretrained(AutoConfig, name)
    is_decoder = config.is_encoder_decoder or getattr(config, "is_decoder", False)
    if is_decoder or type(config) not in MODEL_FOR_MASKED_LM_MAPPING:
        raise UserError(
            f"{name} is a {config.model_type} model, not an encoder: bert_imdb fine-tunes encoders (BERT, "
            "DistilBERT, RoBERTa, ELECTRA, DeBERTa, ALBERT, ModernBERT, ...); point model.model_name_or_path "
            "at one"
        )
    return config


def attention_dropout_names(config: PretrainedConfig) -> list[str]:
    """The config's attention dropout settings, by their names in this architecture (BERT's
    attention_probs_dropout_prob, DistilBERT's and ModernBERT's attention_dropout, ...): read from the
    config itself, not from a list of architectures."""
    return [
        key
        for key, value in config.to_dict().items()
        if isinstance(value, float) and ("attention" in key or "attn" in key) and "drop" in key
    ]


def attention_settings(
    config: PretrainedConfig, attention_dropout: float | None, attn_implementation: str
) -> dict:
    """The from_pretrained arguments for the attention: its implementation, and its dropout under the
    architecture's own name (None keeps the checkpoint's own)."""
    if attention_dropout is not None and not 0 <= attention_dropout < 1:
        raise UserError(
            f"model.attention_dropout={attention_dropout} must lie in [0, 1), e.g. 0 or 0.1, or be null for the "
            "model's own"
        )
    names = [] if attention_dropout is None else attention_dropout_names(config)
    if attention_dropout is not None and not names:
        log.warning(
            "model.attention_dropout=%s: a %s model has no attention dropout setting; it keeps its own",
            attention_dropout,
            config.model_type,
        )
    return {"attn_implementation": attn_implementation, **dict.fromkeys(names, attention_dropout)}


def load_encoder(auto_class, name: str, attention_dropout: float | None, attn_implementation: str, **kwargs):
    """(model, the attention implementation it runs): `auto_class.from_pretrained` of an encoder with the
    attention settings applied under its own names; where the architecture has no `sdpa` attention
    (DeBERTa-v2, say), with `eager`, said in one line."""
    settings = attention_settings(encoder_config(name), attention_dropout, attn_implementation)
    try:
        return from_pretrained(auto_class, name, **settings, **kwargs), attn_implementation
    except UserError as err:
        if attn_implementation != "sdpa" or "attn_implementation" not in str(err.__cause__ or ""):
            raise
    log.warning(
        "model.attn_implementation=sdpa: %s has no sdpa attention in transformers, so it runs eager "
        "(set model.attn_implementation eager to say so)",
        name,
    )
    return from_pretrained(
        auto_class, name, **{**settings, "attn_implementation": "eager"}, **kwargs
    ), "eager"


def accepted_inputs(model, names: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `names` the model's forward takes: token type ids only where the architecture has them
    (BERT does, DistilBERT and RoBERTa-style models not)."""
    parameters = inspect.signature(model.forward).parameters
    return tuple(name for name in names if name in parameters)


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The tokenizer of `name`, refused in one line where it cannot encode text for the model: a folder
    without tokenizer files (transformers then builds one of special tokens only, every word [UNK]), or
    a vocabulary larger than the model's embeddings (ids past their end)."""
    tokenizer = from_pretrained(AutoTokenizer, name)
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        raise UserError(
            f"{name} has no tokenizer files (its tokenizer holds only special tokens: every word would be "
            f"[UNK]): add them, e.g. AutoTokenizer.from_pretrained(<the base model>).save_pretrained('{name}')"
        )
    vocab_size = getattr(from_pretrained(AutoConfig, name), "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise UserError(
            f"the tokenizer of {name} has {len(tokenizer)} tokens, its model's embeddings {vocab_size}: ids "
            "past them would fail or train on the wrong rows; use the model's own tokenizer files"
        )
    return tokenizer


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
