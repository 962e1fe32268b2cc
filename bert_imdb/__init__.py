"""Fine-tune (and optionally pre-train) BERT on IMDb movie reviews with PyTorch Lightning."""

from bert_imdb.classifier import SentimentClassifier
from bert_imdb.data import IMDbDataModule
from bert_imdb.pretraining import MaskedLanguageModel
from bert_imdb.pretraining_data import IMDbPretrainingDataModule

__all__ = ["IMDbDataModule", "IMDbPretrainingDataModule", "MaskedLanguageModel", "SentimentClassifier"]
