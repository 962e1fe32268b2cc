"""--config files checked before jsonargparse reads them: one line for a file that holds no settings."""

from pathlib import Path

import yaml

from bert_imdb.errors import UserError

# A config is a page of YAML; anything this large was passed by mistake (a checkpoint, a dataset).
MAX_CONFIG_BYTES = 10 * 2**20


def check_config_files(argv: list) -> None:
    """Stop on a --config that is no YAML mapping before jsonargparse reads it: a binary file (a checkpoint
    passed by mistake, say) ends there in a UnicodeDecodeError traceback, and a YAML syntax error in its
    usage text and a message of several lines. jsonargparse's YAML loader is a SafeLoader: what it reads,
    yaml.safe_load reads too."""
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            continue
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.partition("=")[2]
        else:
            continue
        file = Path(str(path))
        if not file.is_file():
            continue  # jsonargparse says a missing file in one line, and a config string is no path
        size = file.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise UserError(
                f"--config {path} is {size / 2**20:.0f} MB, not a YAML config: pass one such as configs/quickstart.yaml"
            )
        try:
            settings = yaml.safe_load(file.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise UserError(
                f"--config {path} is not a UTF-8 text file: pass a YAML config such as configs/quickstart.yaml"
            ) from None
        except yaml.YAMLError as err:
            # jsonargparse reports it as its usage text and a multi-line message about "<unicode string>".
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err)
            raise UserError(
                f"--config {path} is not valid YAML{where} ({problem}): fix the file there"
            ) from None
        if not isinstance(settings, dict):
            what = "nothing" if settings is None else f"a {type(settings).__name__}"
            raise UserError(
                f"--config {path} holds {what}, not settings: write them as key: value lines, as in "
                "configs/quickstart.yaml"
            )
