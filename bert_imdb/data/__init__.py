"""IMDb for both tasks: reading it, cutting reviews to length, batching them, and the two data modules
(sentiment.py for fine-tuning, pretraining.py for masked-LM pre-training)."""

# `bert_imdb.data.IMDbDataModule` is also the class path of checkpoints written when data was a module.
from bert_imdb.data.sentiment import IMDbDataModule

__all__ = ["IMDbDataModule"]
