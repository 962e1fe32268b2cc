"""LastCheckpoint saves only where a resume is exact."""

from conftest import tiny_args

from bert_imdb.cli import cli_main
from bert_imdb.resume.last_checkpoint import LastCheckpoint


def test_a_time_interval_save_waits_for_the_end_of_the_accumulation_window(
    tiny_model, hub_dataset, workdir, monkeypatch
):
    """A save due every moment (train_time_interval) comes only where an accumulation window ends: its
    gradients are in no checkpoint. The contract holds through optimizer_step_taken and, in Lightning 2.6,
    through ModelCheckpoint's skip of a global step already saved: the test fails only without both."""
    saved_after = []
    save = LastCheckpoint._save_checkpoint

    def noting(self, trainer, filepath):
        saved_after.append(trainer.fit_loop.epoch_loop.batch_idx + 1)  # batches of the epoch done
        save(self, trainer, filepath)

    monkeypatch.setattr(LastCheckpoint, "_save_checkpoint", noting)
    args = [
        "--trainer.accumulate_grad_batches=3",
        "--trainer.limit_train_batches=10",
        "--trainer.max_epochs=1",
        "--last_checkpoint.every_n_epochs=null",
        "--last_checkpoint.train_time_interval=0:00:00.000001",
    ]
    cli_main(["fit", *tiny_args(tiny_model, hub_dataset, *args)])
    assert saved_after and all(done % 3 == 0 or done == 10 for done in saved_after), saved_after
    assert {3, 6, 9} <= set(saved_after)
