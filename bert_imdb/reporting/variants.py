"""Where a test of a checkpoint under other data settings keeps its records: beside the checkpoint's own
test, not over it.

A test writes its TensorBoard records at the step of the weights it scores, so every test of one checkpoint
lands on the same step, and the newest wins: the HPARAMS tab and the model card of an export read them from
there. A test of the long reviews only under `head` truncation (docs/evaluation.md) would then stand in the
card as the checkpoint's test accuracy. So only a test of the reviews the fit's own data settings give is
`test`; any other is named for what differs.
"""

# The data settings that decide which test reviews are scored and what of them the model sees: the label
# each takes in a variant's name (its value follows), and the value shown when it is unset.
TEST_SETTINGS = (
    ("truncation", "", None),
    ("max_length", "max", None),
    ("max_test_samples", "n", "all"),
    ("test_min_tokens", "min", "0"),
)


def variant_name(fit_data: dict, data: dict) -> str:
    """`test`, where `data` (the test's data settings) give the test reviews `fit_data` (the checkpoint's)
    would; else `test_<what differs>`, such as `test_head_min513` or `test_max256_nall`.

    Args:
        fit_data: The data module's hyperparameters the checkpoint was trained with (empty when it has none,
            as checkpoints from before data modules saved them: then every test is `test`).
        data: The data module's hyperparameters of this test.
    """
    if not fit_data:
        return "test"
    parts = []
    for name, label, unset in TEST_SETTINGS:
        value = data.get(name)
        if value != fit_data.get(name):
            parts.append(f"{label}{unset if value is None else value}")
    return "_".join(["test", *parts])
