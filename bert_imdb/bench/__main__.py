"""`python -m bert_imdb.bench`: the seed recipe and bert_imdb side by side (`--help` lists the other modes)."""

import sys

from bert_imdb.bench.cli import main
from bert_imdb.errors import UserError

if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {err}")
