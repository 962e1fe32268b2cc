import json

from conftest import tiny_args

from bert_imdb.cli import cli_main


def test_memory_by_stage_records_every_stage_of_a_fit(tiny_model, hub_dataset, workdir):
    record = [
        "--trainer.callbacks+=bert_imdb.bench.memory.MemoryByStage",
        "--trainer.callbacks.path=memory.json",
    ]
    cli_main(
        [
            "fit",
            *tiny_args(
                tiny_model,
                hub_dataset,
                "--trainer.max_epochs=1",
                *record,
                "--trainer.callbacks.every_n_steps=20",
            ),
        ]
    )
    stages = json.loads((workdir / "memory.json").read_text())
    # After setup; the sanity check's validation; steps 20 and 40; the epoch's validation; the end.
    assert [(s["stage"], s["step"]) for s in stages] == [
        ("model loaded and reviews tokenized (fit)", 0),
        ("training", 0),
        ("validation", 0),
        ("training", 20),
        ("training", 40),
        ("validation", 40),
        ("training", 40),
    ]
    # glibc's heap statistics were read (mallinfo2).
    assert all(stage["heap_in_use_gb"] > 0 for stage in stages)
