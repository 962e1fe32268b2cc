import math

import lightning as L
import pytest
import torch
from conftest import training_batches
from torch.nn import functional as F

from bert_imdb.data.pretraining import IMDbPretrainingDataModule
from bert_imdb.errors import UserError
from bert_imdb.models.masked_lm import MaskedLanguageModel, perplexity


def trainer(tmp_path) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )


def test_perplexity_is_exp_of_the_mean_masked_token_loss(tiny_model, text_dataset, tmp_path):
    module = MaskedLanguageModel(tiny_model)
    dm = IMDbPretrainingDataModule(
        text_dataset, tiny_model, max_length=32, eval_batch_size=16, val_reviews=60
    )
    (metrics,) = trainer(tmp_path).validate(module, datamodule=dm, verbose=False)
    # The same, by hand: every masked token of the validation set weighs the same, whatever its batch.
    module.eval()
    total, count, correct = 0.0, 0, 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits, labels = module.model(**batch).logits, batch["labels"]
            total += float(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum"))
            masked = labels != -100
            count += int(masked.sum())
            correct += int((logits.argmax(-1) == labels)[masked].sum())
    assert count > 100
    assert metrics["val/mlm_loss"] == pytest.approx(total / count, rel=1e-4)
    assert metrics["val/perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)
    assert metrics["val/masked_acc"] == pytest.approx(correct / count, abs=1e-6)


def test_perplexity_does_not_overflow():
    assert float(perplexity(torch.tensor(math.log(5.0)))) == pytest.approx(5.0)
    huge = perplexity(torch.tensor(1000.0))
    assert torch.isfinite(huge) and float(huge) == pytest.approx(math.exp(88.0), rel=1e-5)


def test_nsp_loss_is_added_to_the_mlm_loss(tiny_pretraining_model, text_dataset, tmp_path):
    module = MaskedLanguageModel(tiny_pretraining_model, nsp=True)
    dm = IMDbPretrainingDataModule(
        text_dataset, tiny_pretraining_model, max_length=48, nsp=True, eval_batch_size=16, val_reviews=60
    )
    (metrics,) = trainer(tmp_path).validate(module, datamodule=dm, verbose=False)
    module.eval()
    with torch.no_grad():
        hits = [
            (
                module.model(**batch).seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]
            ).tolist()
            for batch in dm.val_dataloader()
        ]
    right = [hit for batch in hits for hit in batch]
    assert len(right) > 20 and metrics["val/nsp_acc"] == pytest.approx(sum(right) / len(right), abs=1e-6)
    # BertForPreTraining's loss is the masked-LM loss plus the next-sentence loss, as BERT was trained.
    assert metrics["val/loss"] > metrics["val/mlm_loss"] + 0.1


def test_nsp_needs_a_model_with_an_nsp_head(tiny_model):
    with pytest.raises(UserError, match=r"has no next-sentence-prediction head: set model\.nsp false"):
        MaskedLanguageModel(tiny_model, nsp=True)


@pytest.mark.parametrize("nsp", [False, True], ids=["mlm", "mlm+nsp"])
def test_the_head_on_scored_positions_only_gives_hugging_faces_loss_and_metrics(
    tiny_pretraining_model, text_dataset, tmp_path, nsp
):
    dm = IMDbPretrainingDataModule(
        text_dataset,
        tiny_pretraining_model,
        max_length=48,
        nsp=nsp,
        batch_size=16,
        eval_batch_size=16,
        val_reviews=60,
    )
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    batch = next(training_batches(dm))
    module = MaskedLanguageModel(tiny_pretraining_model, nsp=nsp).eval()
    inputs = {k: v for k, v in batch.items() if k not in ("lengths", "masked_index")}
    with torch.no_grad():
        whole = module.model(**inputs).loss  # the vocabulary projection on every position
        scored, _ = module._loss(batch, *module._forward(batch))
    assert float(scored) == pytest.approx(float(whole), abs=1e-5)
    # Validation metrics, the scored-positions head against the whole one.
    full = MaskedLanguageModel(tiny_pretraining_model, nsp=nsp, head_on_masked_only=False)
    (fast,), (slow,) = (trainer(tmp_path).validate(m, datamodule=dm, verbose=False) for m in (module, full))
    assert fast.keys() == slow.keys()
    for name in fast:
        assert fast[name] == pytest.approx(slow[name], rel=1e-5), name


@pytest.mark.parametrize("nsp", [False, True], ids=["mlm", "mlm+nsp"])
def test_validation_loss_is_the_same_for_any_evaluation_batch_size(
    tiny_pretraining_model, text_dataset, tmp_path, nsp
):
    """val/loss, the checkpoint monitor, averaged batch means weighted by examples: it moved with the batch
    size (1.222, 1.167 or 1.190 for the same reviews in the issue's example)."""
    losses = {}
    for batch_size in (3, 16, 64):
        module = MaskedLanguageModel(tiny_pretraining_model, nsp=nsp)
        dm = IMDbPretrainingDataModule(
            text_dataset,
            tiny_pretraining_model,
            max_length=48,
            nsp=nsp,
            eval_batch_size=batch_size,
            val_reviews=60,
        )
        (metrics,) = trainer(tmp_path / str(batch_size)).validate(module, datamodule=dm, verbose=False)
        losses[batch_size] = metrics["val/loss"]
        if not nsp:
            assert metrics["val/loss"] == pytest.approx(metrics["val/mlm_loss"], abs=1e-6)
    assert losses[3] == pytest.approx(losses[16], abs=1e-6) and losses[3] == pytest.approx(
        losses[64], abs=1e-6
    )
