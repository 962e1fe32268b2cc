"""The Lightning modules: SentimentClassifier (classifier.py) and MaskedLanguageModel (masked_lm.py), and
what they share: loading pretrained models, model inputs, the optimizer, torch.compile, FLOP counting."""
