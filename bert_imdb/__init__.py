"""Fine-tune (and optionally pre-train) BERT on IMDb movie reviews with PyTorch Lightning."""

from bert_imdb._legacy import register_old_paths
from bert_imdb.data.pretraining import IMDbPretrainingDataModule
from bert_imdb.data.sentiment import IMDbDataModule
from bert_imdb.models.classifier import SentimentClassifier
from bert_imdb.models.masked_lm import MaskedLanguageModel

__all__ = ["IMDbDataModule", "IMDbPretrainingDataModule", "MaskedLanguageModel", "SentimentClassifier"]

register_old_paths()
