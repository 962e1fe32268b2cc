"""The README.md (model card) that `export` writes beside the weights, as Hugging Face model folders carry."""

from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_imdb.data.truncation import head_tokens
from bert_imdb.sources import is_hub_id, looks_like_path

NOT_RECORDED = "not recorded"


def recorded_metrics(module_class: type, checkpoint: dict, ckpt_path: str) -> dict[str, float | str]:
    """The checkpoint's validation metrics (kept in it by ValidationRecord) and its test metrics (logged in
    its run folder, <run>/checkpoints/<file>.ckpt, by a test of it, at its step), or "not recorded"."""
    validation = checkpoint.get("callbacks", {}).get("ValidationRecord", {}).get("metrics", {})
    shown = module_class.card_metrics
    found: dict[str, float | str] = {name: validation.get(name, NOT_RECORDED) for name in shown["validation"]}
    found |= {name.removeprefix("hp/").replace("_", "/", 1): NOT_RECORDED for name in shown["test"]}
    run = Path(ckpt_path).expanduser().resolve().parent.parent
    if not shown["test"] or not any(run.glob("events.out.tfevents.*")):
        return found
    events = EventAccumulator(str(run))
    events.Reload()
    for name in set(shown["test"]) & set(events.Tags()["scalars"]):
        at_step = [
            event.value for event in events.Scalars(name) if event.step == checkpoint.get("global_step")
        ]
        if at_step:
            found[name.removeprefix("hp/").replace("_", "/", 1)] = at_step[-1]
    return found


def _truncation_text(data: dict) -> str:
    max_length, truncation = data.get("max_length"), data.get("truncation", "head")
    if max_length is None:
        return f"Reviews were truncated ({truncation}); the length is {NOT_RECORDED}."
    if truncation == "head":
        kept = f"their first {max_length} tokens"
        match = (
            "`pipeline(...)(texts, truncation=True)` does the same (the tokenizer's `model_max_length` is "
            f"{max_length})."
        )
    else:
        head = head_tokens(max_length) if truncation == "head+tail" else 0
        kept = (
            f"their first {head} and last {max_length - 2 - head} tokens (head+tail)"
            if truncation == "head+tail"
            else f"their last {max_length - 2} tokens (tail)"
        )
        match = (
            "`pipeline(...)(texts, truncation=True)` keeps the first tokens instead, so reviews longer than "
            f"{max_length} tokens are classified from another part of their text than in training. To match "
            "training, predict with `python -m bert_imdb predict`, or cut the token ids yourself as "
            "`bert_imdb.data.truncation.tokenize` does."
        )
    return f"Reviews longer than {max_length} tokens (special tokens included) kept {kept}. {match}"


def _metrics_table(metrics: dict[str, float | str]) -> str:
    rows = [
        f"| `{name}` | {value:.4f} |" if isinstance(value, float) else f"| `{name}` | {value} |"
        for name, value in metrics.items()
    ]
    return "| metric | value |\n|---|---|\n" + "\n".join(rows)


def _public(value):
    """A setting as a published card may show it: a local path by its last part only (where a model or the
    reviews lay on the machine that trained it is nobody's business, and means nothing elsewhere)."""
    if isinstance(value, str) and looks_like_path(value):
        return Path(value).name
    return value


def model_card(module_class: type, checkpoint: dict, ckpt_path: str, sizes: dict) -> str:
    """The card of an exported checkpoint of `module_class`, with the sizes its data module recorded."""
    kind = module_class.__name__
    saved_model, saved_data = (
        checkpoint["hyper_parameters"],
        checkpoint.get("datamodule_hyper_parameters", {}),
    )
    model = {k: _public(v) for k, v in saved_model.items() if not k.startswith("_")}
    data = {k: _public(v) for k, v in saved_data.items() if not k.startswith("_")}
    base, dataset = model["model_name_or_path"], data.get("dataset", NOT_RECORDED)
    classifier = kind == "SentimentClassifier"
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification" if classifier else "fill-mask",
        "language": ["en"],
        "tags": ["bert_imdb", "sentiment-analysis" if classifier else "masked-language-modeling"],
    }
    # Decided on the saved values: a local folder shown by its name alone could read as a Hub id.
    if is_hub_id(saved_model["model_name_or_path"]):
        metadata["base_model"] = base
    if is_hub_id(saved_data.get("dataset", NOT_RECORDED)):
        metadata["datasets"] = [dataset]
    metrics = recorded_metrics(module_class, checkpoint, ckpt_path)
    what = (
        "a binary sentiment classifier (labels `neg`, `pos`) of English movie reviews"
        if classifier
        else "a masked language model further pre-trained on English movie reviews"
    )
    unit = "reviews" if classifier else "examples (blocks, reviews or sentence pairs)"
    trained_on = (
        f"{sizes.get('train', NOT_RECORDED)} training {unit}, {sizes.get('val', NOT_RECORDED)} held out for "
        "validation"
    )
    inputs = (
        _truncation_text(data)
        if classifier
        else f"examples of up to {data.get('max_length', NOT_RECORDED)} tokens, "
        f"{data.get('mlm_probability', NOT_RECORDED)} of their tokens masked"
    )
    usage = (
        "```python\nfrom transformers import pipeline\n\n"
        'classify = pipeline("text-classification", model="<this folder>")\n'
        'classify(["A moving, beautifully acted film."], truncation=True)\n```'
        if classifier
        else "```python\nfrom transformers import pipeline\n\n"
        'fill = pipeline("fill-mask", model="<this folder>")\nfill("This movie was [MASK].")\n```\n\n'
        "To fine-tune a classifier from it: `python -m bert_imdb fit --model.model_name_or_path <this folder>`."
    )
    limits = (
        "- Trained on IMDb reviews only: other domains (product reviews, tweets, other languages) were not "
        "evaluated and may fare worse.\n"
        "- Two labels: mixed or neutral reviews are still called `neg` or `pos`.\n"
        "- IMDb's labels come from star ratings (at most 4 of 10 negative, at least 7 positive); reviews in "
        "between are not in the data.\n"
        "- Reviews reflect IMDb's users; the model may carry their biases."
        if classifier
        else "- Pre-trained further on IMDb review text only (train and unsupervised splits, never test).\n"
        "- A checkpoint that shipped without an MLM head (such as all-MiniLM-L6-v2) starts that head "
        "from scratch: its predictions of masked words are only as good as this run made them."
    )
    config = yaml.safe_dump({"model": model, "data": data}, sort_keys=False).strip()
    return f"""---
{yaml.safe_dump(metadata, sort_keys=False).strip()}
---

# {base}, {"fine-tuned" if classifier else "pre-trained further"} on IMDb

This is {what}, exported by bert_imdb (`python -m bert_imdb export`) from
`{Path(ckpt_path).name}` (global step {checkpoint.get("global_step", NOT_RECORDED)}, epoch {checkpoint.get("epoch", NOT_RECORDED)}).

- **Base model**: `{base}`
- **Training data**: `{dataset}`: {trained_on}.
- **Inputs**: {inputs}

## Metrics

From the validation that scored these weights (on the held-out reviews), and from a test of this
checkpoint in its run folder, if there was one:

{_metrics_table(metrics)}

## How to use

{usage}

## Limits

{limits}

## Configuration

The model and data settings of the run (`python -m bert_imdb fit --config` accepts them under `model:` and
`data:`):

```yaml
{config}
```
"""
