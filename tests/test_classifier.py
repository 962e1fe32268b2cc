import lightning as L
import pytest

from bert_imdb.classifier import SentimentClassifier
from bert_imdb.data import IMDbDataModule


def trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


@pytest.fixture
def tiny_data(tiny_model, hub_dataset) -> IMDbDataModule:
    return IMDbDataModule(hub_dataset, tiny_model, max_length=64, batch_size=8, val_fraction=0.2)


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_falls_on_a_learnable_toy_set(tiny_model, tiny_data, tmp_path, seed):
    L.seed_everything(seed)
    model = SentimentClassifier(tiny_model, learning_rate=2e-3)
    run = trainer(tmp_path, max_epochs=4)
    before = run.validate(model, tiny_data, verbose=False)[0]
    run.fit(model, tiny_data)
    after = run.validate(model, tiny_data, verbose=False)[0]
    assert after["val/loss"] < 0.5 * before["val/loss"]
    assert after["val/acc"] > 0.9 > before["val/acc"]


def test_scheduler_steps_once_per_optimizer_step(tiny_model, tiny_data, tmp_path):
    model = SentimentClassifier(tiny_model, learning_rate=1e-3, warmup_ratio=0.25)
    run = trainer(tmp_path, max_epochs=2, accumulate_grad_batches=2)
    run.fit(model, tiny_data)
    batches = len(tiny_data.train_dataloader())
    scheduler = run.lr_scheduler_configs[0].scheduler
    # 320 train reviews in batches of 8 = 40 batches an epoch, 20 optimizer steps with accumulation 2.
    assert run.global_step == run.estimated_stepping_batches == 2 * batches // 2 == 40
    assert scheduler.last_epoch == run.global_step
    assert scheduler.get_last_lr() == [0.0, 0.0]  # decayed to zero exactly at the last step
    # Warmup is int(0.25 * 40) = 10 steps: half the peak after 5, the peak after 10.
    assert scheduler.lr_lambdas[0](5) == 0.5 and scheduler.lr_lambdas[0](10) == 1.0


def test_no_weight_decay_on_biases_and_layernorm(tiny_model, tmp_path):
    model = SentimentClassifier(tiny_model, weight_decay=0.05)
    model.trainer = trainer(tmp_path, max_steps=10)
    optimizer = model.configure_optimizers()["optimizer"]
    names = {id(p): n for n, p in model.model.named_parameters()}
    decayed, exempt = ({names[id(p)] for p in g["params"]} for g in optimizer.param_groups)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert exempt == {n for n in names.values() if n.endswith("bias") or "LayerNorm" in n}
    assert decayed == set(names.values()) - exempt
    assert "bert.embeddings.word_embeddings.weight" in decayed
