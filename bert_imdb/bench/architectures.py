"""`--architectures`: training throughput and MFU of each encoder family bert_imdb fine-tunes, against the
tuned Hugging Face Trainer on the same shapes, with random weights (speed only: nothing is learned).

Each family is built from its own config class at two sizes: base, the dimensions of its usual Hub
checkpoint (named below; read from that checkpoint's config.json, since the config classes' defaults are
other sizes: ALBERT's are xxlarge, DeBERTa-v2's xlarge, ELECTRA's small), and tiny, the tests' size (where
the step is mostly overhead). Every model gets the --model tokenizer, with the family's special token ids
pointed at it, and takes token type ids only where its forward does; XLM-R is RoBERTa's shape with a larger
vocabulary, so it is not measured apart.
"""

from pathlib import Path

import torch
from transformers import (
    AlbertConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    ModernBertConfig,
    PretrainedConfig,
    RobertaConfig,
)

from bert_imdb.models.pretrained import accepted_inputs

BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
# family: (the Hub checkpoint whose base dimensions are used, config class, base settings, tiny settings)
FAMILIES: dict[str, tuple[str, type[PretrainedConfig], dict, dict]] = {
    "bert": ("bert-base-uncased", BertConfig, BASE, TINY),
    # DistilBertConfig's defaults are distilbert-base's (6 layers); it names its sizes its own way.
    "distilbert": (
        "distilbert-base-uncased",
        DistilBertConfig,
        {},
        {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64},
    ),
    "roberta": (
        "roberta-base",
        RobertaConfig,
        {**BASE, "type_vocab_size": 1},
        {**TINY, "type_vocab_size": 1},
    ),
    "electra": (
        "google/electra-base-discriminator",
        ElectraConfig,
        {**BASE, "embedding_size": 768},
        {**TINY, "embedding_size": 16},
    ),
    "deberta-v2": (
        "microsoft/deberta-v3-base",
        DebertaV2Config,
        {
            **BASE,
            "relative_attention": True,
            "position_buckets": 256,
            "norm_rel_ebd": "layer_norm",
            "share_att_key": True,
            "pos_att_type": ["p2c", "c2p"],
            "max_relative_positions": -1,
            "position_biased_input": False,
            "type_vocab_size": 0,
        },
        TINY,
    ),
    "albert": (
        "albert-base-v2",
        AlbertConfig,
        {**BASE, "embedding_size": 128},
        {**TINY, "embedding_size": 16},
    ),
    # ModernBertConfig's defaults are ModernBERT-base's (22 layers, alternating local and global attention).
    "modernbert": ("answerdotai/ModernBERT-base", ModernBertConfig, {}, {**TINY, "intermediate_size": 48}),
}
SIZES = ("tiny", "base")


def encoder_config(family: str, size: str, tokenizer, positions: int) -> PretrainedConfig:
    """`family`'s config at `size` ("tiny" or "base"), for `tokenizer`'s vocabulary and special tokens and
    `positions` tokens a sequence (at least the benchmark's --max-length)."""
    _, config_class, base, tiny = FAMILIES[family]
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
    if config_class is ModernBertConfig:
        special |= {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id}
    # RoBERTa counts positions from the padding id on: two more than the longest review.
    extra = 2 if config_class is RobertaConfig else 0
    sizes = base if size == "base" else tiny
    return config_class(
        vocab_size=len(tokenizer), max_position_embeddings=positions + extra, **special, **sizes
    )


def build_encoder(
    family: str, size: str, tokenizer_source: str, folder: Path, seed: int, positions: int
) -> tuple[Path, int]:
    """A model folder of `family` at `size` (encoder_config) with random weights and `tokenizer_source`'s
    tokenizer, which gives token type ids only where the model's forward takes them; and the model's
    parameter count."""
    config = encoder_config(family, size, AutoTokenizer.from_pretrained(tokenizer_source), positions)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    model.save_pretrained(folder)
    names = list(accepted_inputs(model, ("input_ids", "token_type_ids", "attention_mask")))
    AutoTokenizer.from_pretrained(tokenizer_source, model_input_names=names).save_pretrained(folder)
    return folder, sum(p.numel() for p in model.parameters())


def architectures_markdown(header: list[str], report: dict) -> str:
    steps = report["settings"]["lever_steps"]
    lines = [
        *header,
        f"Each row: {steps} training steps (and one evaluation) of a model with random weights, built from the "
        "family's config class at the tests' tiny size or at the base size of the checkpoint named, in a "
        "process per run. MFU counts each weight once per token: ALBERT applies its one shared layer in "
        "every layer, so its MFU is understated by its layer count.",
        "",
        "| family (base dimensions of) | size | parameters | tuned peer real tokens/s | MFU | bert_imdb real "
        "tokens/s | MFU | bert_imdb vs tuned peer | precision |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in report["architectures"].items():
        family, size = name.rsplit(" ", 1)
        peer, ours = row["tuned_peer"], row["bert_imdb"]
        ratio = ours["real_tokens_per_second"] / peer["real_tokens_per_second"]
        lines.append(
            f"| {family} ({FAMILIES[family][0]}) | {size} | {row['parameters'] / 1e6:,.1f} M "
            f"| {peer['real_tokens_per_second']:,.0f} | {peer['mfu']:.1%} "
            f"| {ours['real_tokens_per_second']:,.0f} | {ours['mfu']:.1%} | {ratio:.2f}x | {ours['precision']} |"
        )
    return "\n".join(lines) + "\n"
