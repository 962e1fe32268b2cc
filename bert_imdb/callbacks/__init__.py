"""Callbacks, one per file, each named after its LightningCLI group (`--exact_resume.*`, `--slurm_requeue.*`,
`--throughput.*`, `--predictions.*`, ...): they observe a run and record what it needs; loops control it."""
