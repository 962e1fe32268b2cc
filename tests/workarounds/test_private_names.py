"""The private names the workarounds use still exist and do what the workaround expects: when one of these
fails, the library version that changed it is the one to read the workaround against again."""

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.tensorboard import SummaryWriter

from bert_imdb.workarounds.checkpoint_at_epoch_end import save_at_epoch_end
from bert_imdb.workarounds.cpu_bf16 import cpu_has_native_bf16
from bert_imdb.workarounds.recompile_limit import raise_recompile_limit
from bert_imdb.workarounds.tensorboard_file_writer import file_writer


def test_cpu_bf16_is_answered_by_torchs_private_checks():
    assert isinstance(cpu_has_native_bf16(), bool)


def test_the_recompile_limit_is_raised_and_never_lowered(monkeypatch):
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    monkeypatch.setattr(config, name, 8)
    raise_recompile_limit(64)
    assert getattr(config, name) == 64
    raise_recompile_limit(16)
    assert getattr(config, name) == 64


def test_the_tensorboard_file_writer_takes_raw_summaries(tmp_path):
    writer = SummaryWriter(tmp_path)
    assert callable(file_writer(writer).add_summary)
    writer.close()


def test_modelcheckpoint_still_has_the_methods_of_its_epoch_end_save():
    # Their behaviour is held by the resume grid (tests/resume/test_exact_resume.py).
    for name in ("_should_skip_saving_checkpoint", "_save_topk_checkpoint", "_monitor_candidates"):
        assert callable(getattr(ModelCheckpoint, name)), name
    assert callable(save_at_epoch_end)


def test_models_say_whether_they_take_transformers_attention_masks():
    from transformers import BertForSequenceClassification, DebertaV2ForSequenceClassification

    from bert_imdb.workarounds.attention_interface import takes_prepared_masks

    assert takes_prepared_masks(BertForSequenceClassification.__new__(BertForSequenceClassification))
    assert not takes_prepared_masks(
        DebertaV2ForSequenceClassification.__new__(DebertaV2ForSequenceClassification)
    )


def test_a_strategy_keeps_the_process_group_timeout_it_was_given():
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    from bert_imdb.workarounds.process_group_timeout import process_group_timeout

    for strategy in (DDPStrategy, FSDPStrategy):
        assert process_group_timeout(strategy(timeout=timedelta(seconds=7))) == timedelta(seconds=7)
