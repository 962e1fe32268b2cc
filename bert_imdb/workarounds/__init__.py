"""Every workaround of Lightning, torch or transformers, and the only modules that touch their private
names: one workaround per module, each with the version it was read from and the test that fails when that
version's behaviour changes (tests/workarounds/), saying the workaround can go.

- fit_loop: resuming exactly (an ended epoch is no restart; the saved data position; random generators).
- checkpoint_at_epoch_end: a step-interval ModelCheckpoint saving at an epoch's end.
- validation_follows: whether a validation follows the batch that just ended (a checkpoint saved before it
  resumes without it).
- tensorboard_file_writer: raw HPARAMS summaries.
- cpu_bf16: native bf16 on the CPU.
- recompile_limit: torch.compile's recompilation limit, for CUDA graphs per batch shape.
- weighted_mean: torchmetrics' MeanMetric, which drops its weights when its per-update NaN check is off.
- process_group_timeout: the timeout a strategy was given, for the project's own collectives.
- fork_server_in_forked_child: loader workers in a process forked from one whose fork server runs.
- launched_processes: stopping the `ddp` launcher's processes without its observer killing the first.

Two more work around a library through public API only, and live where they are used:
models/inputs.py (transformers' read of the padding mask back from the device) and
resume/atomic_io.py (Lightning's checkpoint save through the system temp folder).
"""
