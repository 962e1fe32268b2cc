"""Exact resume, in one package: a resumed fit trains exactly what the uninterrupted fit would have, or is
refused in one line (docs/resume.md states the guarantee).

- settings_record: every resolved setting a checkpoint records, and the deny-by-default check of a resume
  against them, with the one short list of what may change;
- rules: what older checkpoints recorded (a named list), the processes, batch size and accumulation;
- exact_resume: the callback that records the settings and every process's random generators
  (random_state) in each checkpoint, checks each resume, and applies changes allowed on purpose;
- safe_stop: the one rule for when a save may happen (an optimizer-step boundary), and stopping there on
  a signal (stop_on_signal) or SLURM's warning (slurm_requeue); last_checkpoint, the periodic saves;
- atomic_io: checkpoint files written whole or not at all; loading: reading one, whatever it is;
- finding: the checkpoint a command resumes or scores (`last`, `best`, a requeued SLURM job's own).

The Lightning loop changes it relies on (the fit loop's restore order, stops at whole accumulation
windows) live with the other workarounds, in bert_imdb/workarounds/.
"""
