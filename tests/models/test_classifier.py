import lightning as L
import matplotlib.pyplot as plt
import pytest
import torch
from conftest import mlm_args, quiet_trainer, tiny_args
from lightning.pytorch.loggers import TensorBoardLogger
from probes import NoTensorReads

from bert_imdb.cli import cli_main
from bert_imdb.data.sentiment import IMDbDataModule
from bert_imdb.models import compilation
from bert_imdb.models.classifier import SentimentClassifier


def trainer(tmp_path, logger=False, **kwargs) -> L.Trainer:
    return quiet_trainer(devices=1, logger=logger, default_root_dir=tmp_path, **kwargs)


class LearningRates(L.Callback):
    """The learning rate each optimizer step used."""

    def __init__(self):
        self.seen = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.seen.append(optimizer.param_groups[0]["lr"])


@pytest.fixture
def tiny_data(tiny_model, hub_dataset) -> IMDbDataModule:
    return IMDbDataModule(hub_dataset, tiny_model, max_length=64, batch_size=8, val_fraction=0.2)


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_falls_on_a_learnable_toy_set(tiny_model, tiny_data, tmp_path, seed):
    L.seed_everything(seed)
    model = SentimentClassifier(tiny_model, learning_rate=2e-3)
    run = trainer(tmp_path, max_epochs=4)
    # Before any training or checkpoint, its records say so (val_untrained/...).
    before = run.validate(model, tiny_data, verbose=False)[0]
    run.fit(model, tiny_data)
    after = run.validate(model, tiny_data, verbose=False)[0]
    assert after["val/loss"] < 0.5 * before["val_untrained/loss"]
    assert after["val/acc"] > 0.9 > before["val_untrained/acc"]


def test_scheduler_steps_once_per_optimizer_step(tiny_model, tiny_data, tmp_path):
    model = SentimentClassifier(tiny_model, learning_rate=1e-3, warmup_ratio=0.25)
    rates = LearningRates()
    run = trainer(tmp_path, max_epochs=2, accumulate_grad_batches=2, callbacks=[rates])
    run.fit(model, tiny_data)
    batches = len(tiny_data.train_dataloader())
    scheduler = run.lr_scheduler_configs[0].scheduler
    # 320 train reviews in batches of 8 = 40 batches an epoch, 20 optimizer steps with accumulation 2.
    assert run.global_step == run.estimated_stepping_batches == 2 * batches // 2 == 40
    assert scheduler.last_epoch == run.global_step
    assert scheduler.get_last_lr() == [0.0, 0.0]  # decayed to zero exactly at the last step
    # Warmup is int(0.25 * 40) = 10 steps: half the peak at step 5, the peak at step 10, then down.
    lrs = rates.seen
    assert lrs[5] == pytest.approx(0.5e-3) and lrs[10] == pytest.approx(1e-3)
    assert lrs[:11] == sorted(lrs[:11]) and lrs[10:] == sorted(lrs[10:], reverse=True)


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


@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_parameter_names(tiny_model, hub_dataset, tmp_path):
    L.seed_everything(0)
    # The smallest shapes that still take two widths (8 and 16 tokens): a new width must not break it.
    tiny_data = IMDbDataModule(hub_dataset, tiny_model, max_length=16, val_fraction=0.2, pad_to_multiple_of=8)
    compiled = SentimentClassifier(tiny_model, learning_rate=2e-3, compile=True)
    trainer(tmp_path, max_epochs=1, limit_val_batches=0, limit_train_batches=3).fit(compiled, tiny_data)
    state = compiled.state_dict()
    plain = SentimentClassifier(tiny_model)
    assert list(state) == list(plain.state_dict())  # no "_orig_mod." in the checkpoint
    plain.load_state_dict(state)
    plain.eval(), compiled.eval()
    batch = next(iter(tiny_data.val_dataloader()))
    with torch.no_grad():  # an inference graph: compiling a second training graph would double the test
        assert torch.allclose(plain(batch), compiled(batch), atol=1e-5)


def test_cuda_graphs_compile_statically_with_room_for_a_graph_per_shape(tiny_model, monkeypatch):
    # What compile="reduce-overhead" asks of torch (compiling itself is torch's, run above in the dynamic
    # mode): CUDA graphs need static shapes, and one graph per shape needs the recompile limit raised
    # (tests/workarounds/test_private_names.py checks that the raise reaches torch).
    asked, limits = {}, []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: asked.update(kwargs))
    monkeypatch.setattr(compilation, "raise_recompile_limit", limits.append)
    SentimentClassifier(tiny_model, compile="reduce-overhead")
    assert asked == {"mode": "reduce-overhead", "dynamic": False}
    assert limits == [compilation.STATIC_GRAPHS]


def test_attention_dropout_is_off_unless_asked_and_null_keeps_the_models_own(tiny_model):
    def attention_dropout(**kwargs) -> float:
        return SentimentClassifier(tiny_model, **kwargs).model.config.attention_probs_dropout_prob

    assert attention_dropout() == 0.0
    assert attention_dropout(attention_dropout=None) == 0.1  # BertConfig's, saved with the tiny model
    assert attention_dropout(attention_dropout=0.2) == 0.2
    eager = SentimentClassifier(tiny_model, attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager"


def test_figures_are_drawn_only_where_logged_and_closed(tiny_model, tiny_data, tmp_path):
    plt.close("all")
    model = SentimentClassifier(tiny_model, learning_rate=2e-3)
    logged = trainer(tmp_path, max_epochs=2, logger=TensorBoardLogger(tmp_path), limit_train_batches=2)
    logged.fit(model, tiny_data)  # a sanity check and two validations
    assert plt.get_fignums() == []
    trainer(tmp_path, max_epochs=1, limit_train_batches=2).fit(model, tiny_data)  # no TensorBoard
    assert plt.get_fignums() == []


def test_token_budget_batches_train_the_steps_the_scheduler_was_sized_for(tiny_model, hub_dataset, tmp_path):
    data = IMDbDataModule(hub_dataset, tiny_model, max_length=64, max_tokens=256, val_fraction=0.2)
    model = SentimentClassifier(tiny_model, learning_rate=1e-3)
    run = trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    run.fit(model, data)
    sizes = {len(batch["lengths"]) for batch in data.train_dataloader()}
    assert len(sizes) > 2  # batches of as many reviews as fit in 256 tokens, not of a fixed size
    assert run.global_step == run.estimated_stepping_batches == 2 * len(data.train_dataloader())
    assert run.lr_scheduler_configs[0].scheduler.get_last_lr() == [0.0, 0.0]


@pytest.mark.parametrize("module", ["classifier", "mlm"])
def test_training_and_validation_steps_never_read_a_tensor_on_the_host(
    tiny_model, hub_dataset, text_dataset, workdir, module
):
    # What this CPU can check of "the host never waits on a step": no tensor value is read back between a
    # batch's start and the end of its callbacks (log steps aside, where Lightning reads the logged loss).
    # The GPU script checks the rest with torch.cuda.set_sync_debug_mode("error").
    probe = NoTensorReads()
    args = (
        tiny_args(tiny_model, hub_dataset) if module == "classifier" else mlm_args(tiny_model, text_dataset)
    )
    fit = cli_main(
        [*args, "--trainer.max_steps=6", "--trainer.log_every_n_steps=100", "--trainer.val_check_interval=3"],
        run=False,
    )
    fit.trainer.callbacks.append(probe)
    fit.trainer.fit(fit.model, datamodule=fit.datamodule)
    assert fit.trainer.global_step == 6
    assert not probe.reads, f"{len(probe.reads)} reads, the first:\n{probe.reads[0]}"
