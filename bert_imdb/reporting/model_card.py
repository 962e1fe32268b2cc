"""The README.md (model card) that `export` writes beside the weights, as Hugging Face model folders carry."""

from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_imdb.data.truncation import head_tokens
from bert_imdb.reporting.calibration import reliability_table
from bert_imdb.sources import is_hub_id, looks_like_path

NOT_RECORDED = "not recorded"


def test_scalars(checkpoint: dict, ckpt_path: str) -> dict[str, float]:
    """The scalars a test of the checkpoint logged in its run folder (<run>/checkpoints/<file>.ckpt), at
    its step: empty when it was not tested there."""
    run = Path(ckpt_path).expanduser().resolve().parent.parent
    if not any(run.glob("events.out.tfevents.*")):
        return {}
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    found = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith(("hp/test_", "test_by_length/")):
            at_step = [e.value for e in events.Scalars(tag) if e.step == checkpoint.get("global_step")]
            if at_step:
                found[tag] = at_step[-1]
    return found


def _validation_metrics(checkpoint: dict) -> dict[str, float]:
    """The metrics of the validation that scored the checkpoint's weights, as ValidationRecord kept them."""
    return checkpoint.get("callbacks", {}).get("ValidationRecord", {}).get("metrics", {})


def recorded_metrics(
    module_class: type, checkpoint: dict, tested: dict[str, float]
) -> dict[str, float | str]:
    """The checkpoint's validation metrics (kept in it by ValidationRecord) and its test metrics (`tested`,
    from test_scalars), or "not recorded"."""
    validation = _validation_metrics(checkpoint)
    shown = module_class.card_metrics
    found: dict[str, float | str] = {name: validation.get(name, NOT_RECORDED) for name in shown["validation"]}
    for name in shown["test"]:
        found[name.removeprefix("hp/").replace("_", "/", 1)] = tested.get(name, NOT_RECORDED)
    return found


def _by_length_table(validation: dict, tested: dict) -> str:
    """Accuracy per length bucket, with the bucket sizes, of the validation and the test (where recorded)."""
    splits = (("val_by_length", validation), ("test_by_length", tested))
    names = sorted(
        {
            tag.removeprefix(f"{prefix}/reviews_")
            for prefix, values in splits
            for tag in values
            if tag.startswith(f"{prefix}/reviews_")
        },
        key=_bucket_order,
    )
    if not names:
        return f"Accuracy by review length: {NOT_RECORDED}."
    lines = [
        "| bucket | validation reviews | validation accuracy | test reviews | test accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        cells = [
            name.replace("tokens_", "review tokens ").replace("dropped_", "tokens dropped by truncation ")
        ]
        for prefix, values in splits:
            reviews, accuracy = values.get(f"{prefix}/reviews_{name}"), values.get(f"{prefix}/acc_{name}")
            cells += [
                "-" if reviews is None else str(int(reviews)),
                "-" if accuracy is None else f"{accuracy:.4f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _classifier_sections(checkpoint: dict, tested: dict) -> str:
    """Calibration (temperature, ECE and reliability before and after) and accuracy by review length."""
    calibration = checkpoint.get("calibration") or {}
    report = calibration.get("report")
    validation = _validation_metrics(checkpoint)
    if report is None:
        reliability = f"The validation's reliability bins: {NOT_RECORDED}."
    else:
        reliability = (
            f"On the {sum(b['reviews'] for b in report['uncalibrated']['bins'])} validation reviews, "
            f"temperature T = {report['temperature']:.4f} took the expected calibration error from "
            f"{report['uncalibrated']['ece']:.4f} to {report['calibrated']['ece']:.4f} (negative "
            f"log-likelihood {report['uncalibrated']['nll']:.4f} to {report['calibrated']['nll']:.4f}). "
            "Reliability diagram (`reliability.png` beside this card), by bin of the positive probability:\n\n"
            + reliability_table(report)
        )
    test = ""
    if "hp/test_ece" in tested:
        test = (
            f"\n\nOn the test reviews, the expected calibration error was {tested['hp/test_ece']:.4f} before "
            f"and {tested.get('hp/test_ece_calibrated', float('nan')):.4f} after the temperature."
        )
    return f"""
## Calibration

A review scored 0.9 positive should be positive 9 times in 10. The probabilities are temperature-scaled
(Guo et al. 2017): the logits are divided by one number fitted on the validation reviews by minimising
their negative log-likelihood, which leaves every predicted label as it was.
{reliability}{test}

## Accuracy by review length

By a review's length in tokens (special tokens included) and by the tokens truncation dropped from it:

{_by_length_table(validation, tested)}
"""


def _bucket_order(name: str) -> tuple:
    kind, _, bucket = name.partition("_")
    low = bucket.split("-")[0].rstrip("+")
    return (kind != "tokens", int(low) if low.isdigit() else 0)


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
    """One row per metric; a score's 95% interval (`<name>_ci_low`, `<name>_ci_high`) in its row."""

    def shown(value) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    rows = []
    for name, value in metrics.items():
        if name.endswith(("_ci_low", "_ci_high")):
            continue
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        interval = (
            f" (95% CI {low:.4f}-{high:.4f})" if isinstance(low, float) and isinstance(high, float) else ""
        )
        rows.append(f"| `{name}` | {shown(value)}{interval} |")
    return "| metric | value |\n|---|---|\n" + "\n".join(rows)


def _public(value):
    """A setting as a published card may show it: a local path by its last part only (where a model or the
    reviews lay on the machine that trained it is nobody's business, and means nothing elsewhere)."""
    if isinstance(value, str) and looks_like_path(value):
        return Path(value).name
    return value


def _changes_on_resume(checkpoint: dict) -> str:
    """The settings a resume changed on purpose (`--resume_allow`), each with the step it took effect at:
    the configuration above holds the last values only."""
    changes = checkpoint.get("callbacks", {}).get("ExactResume", {}).get("changes") or []
    if not changes:
        return ""
    lines = [
        f"- `{c['setting']}`: {_public(c['from'])} to {_public(c['to'])} from step {c['step']}"
        for c in changes
    ]
    return "\nChanged on resume, on purpose (`--resume_allow`):\n\n" + "\n".join(lines) + "\n"


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
    tested = test_scalars(checkpoint, ckpt_path) if module_class.card_metrics["test"] else {}
    metrics = recorded_metrics(module_class, checkpoint, tested)
    extra = _classifier_sections(checkpoint, tested) if classifier else ""
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
        'classify(["A moving, beautifully acted film."], truncation=True)\n```\n\n'
        "The scores are calibrated probabilities: the temperature fitted on the validation reviews "
        "(`calibration_temperature` in config.json) divides the logits inside the model, folded into its "
        "classification layer, so `pipeline` applies it with nothing to add. The uncalibrated logits are "
        "the model's logits times that temperature."
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

From the validation that scored these weights (on the held-out reviews), and from the newest test of this
checkpoint in its run folder on the test reviews its training settings give, if there was one:

{_metrics_table(metrics)}
{extra}
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
{_changes_on_resume(checkpoint)}"""
