"""What a run shows beyond its scalars: evaluation figures and PR curves, the HPARAMS row, and the model
card an export writes."""
