import pytest

from bert_imdb.reporting.variants import variant_name

FIT = {"truncation": "head+tail", "max_length": 512, "max_test_samples": None, "test_min_tokens": None}


@pytest.mark.parametrize(
    ("changed", "name"),
    [
        ({}, "test"),
        # Settings that do not change the test reviews or what the model sees of them.
        ({"eval_batch_size": 7, "num_workers": 3, "dataset": "elsewhere/imdb"}, "test"),
        ({"truncation": "head", "test_min_tokens": 513}, "test_head_min513"),
        ({"truncation": "tail"}, "test_tail"),
        ({"max_length": 256, "max_test_samples": 1000}, "test_max256_n1000"),
    ],
)
def test_a_test_is_named_for_the_settings_it_changes(changed, name):
    assert variant_name(FIT, {**FIT, "eval_batch_size": 16, **changed}) == name


def test_unset_again_is_named_too():
    fit = {**FIT, "max_test_samples": 500, "test_min_tokens": 100}
    assert variant_name(fit, FIT) == "test_nall_min0"


def test_a_checkpoint_without_data_settings_is_tested_as_test():
    assert variant_name({}, {**FIT, "truncation": "head"}) == "test"
