"""Fine-tune (and optionally pre-train) BERT on IMDb movie reviews with PyTorch Lightning."""

from bert_imdb.classifier import SentimentClassifier
from bert_imdb.data import IMDbDataModule

__all__ = ["IMDbDataModule", "SentimentClassifier"]
