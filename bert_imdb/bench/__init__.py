"""`python -m bert_imdb.bench`: the seed recipe and bert_imdb, fine-tuned back to back, side by side.

The peer is the recipe bert_imdb replaces, written here as the seed wrote it: Hugging Face `Trainer`,
`BertTokenizer` padding every review to `max_length`, evaluation on the test reviews every epoch. Both
train on the same reviews with the same model, seed, epochs, batch size and learning rate, each in its
own process (so peak memory is its own) with an empty datasets cache (so both tokenize). Before them,
the machine's dense matmul throughput is measured, to report model FLOPs utilisation (MFU).

Results go to `<output-dir>/<time>-<mode>.json` and `.md` (never overwriting an earlier result).
"""
