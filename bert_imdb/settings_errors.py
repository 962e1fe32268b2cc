"""jsonargparse's answer to a bad setting, as one line: which setting, what is wrong with it, and the
nearest valid name.

jsonargparse answers an unknown key, a value of the wrong type or an unknown class with the parser's whole
usage text (here several hundred lines: every Trainer and callback option) and, for a setting of a class
chosen by class_path (model.*, data.*), a message of ten lines about the Union of types it tried. The CLI
builds its parsers with `exit_on_error=False`, so the error arrives here as an exception instead.
"""

import difflib
import inspect
import re
from collections.abc import Iterable

from bert_imdb.tasks import import_class

# Lines of jsonargparse's nested messages that say how it searched, not what is wrong.
_HOW_IT_SEARCHED = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "Problem with given class_path",
    # What the lines below become once readable: a class_path that is no file, and the None alternative.
    "expected path but",
    "expected NoneType",
)


def setting_names(settings, prefix: str = "") -> list[str]:
    """The dotted names a command accepts, as a user writes them: `model.learning_rate` for what the parser
    holds as `model.init_args.learning_rate`.

    Args:
        settings: A parsed jsonargparse Namespace (a command's defaults), or None.
        prefix: Put before each name (a subcommand's `fit.`, dropped again here).
    """
    if settings is None:
        return []
    names = (key.replace(".init_args.", ".") for key, _ in settings.items())
    return sorted({name.removeprefix(prefix) for name in names if not name.endswith(".class_path")})


def _class_settings(message: str, keys: list[str]) -> list[str]:
    """The settings of the class a nested message names (`Problem with given class_path 'X'`), under the
    key it was given for: the class chosen on the command line may not be the default one."""
    found = re.search(r"Problem with given class_path '([^']+)'", message)
    if not found:
        return []
    try:
        parameters = inspect.signature(import_class(found.group(1))).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
    return [".".join([*keys, name]) for name in parameters if name not in ("self", "args", "kwargs")]


def _readable(line: str) -> str:
    line = line.strip().removeprefix("- ").strip()
    line = re.sub(r'^Parser key "[^"]+":\s*', "", line)
    line = re.sub(r"<class '([\w.]+)'>", r"\1", line)
    line = re.sub(r"typing\.Literal\[(.*)\]", r"one of \1", line)
    line = re.sub(r"^Expected a (.+?)\. Got value: (.*)$", r"expected \1, got '\2'", line)
    return re.sub(r"^Expected a ", "expected ", line)


def _nearest(name: str, candidates: Iterable[str]) -> str | None:
    nearest = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return nearest[0] if nearest else None


def one_line(message: str, command: str, known: Iterable[str] = ()) -> str:
    """jsonargparse's error `message` for `command` (`bert-imdb fit`) as one line that names the setting,
    the problem and the fix.

    Args:
        message: The ArgumentError's text.
        command: The command as typed, for its `--help`.
        known: The settings the command accepts, for the nearest name to an unknown one.
    """
    known = list(known)
    help_hint = f"`{command} --help` lists the settings"
    keys = re.findall(r'Parser key "([^"]+)"', message)
    unknown = re.search(r"does not accept option '([^']+)'|Option '([^']+)' is not accepted", message)
    unrecognized = re.match(r"unrecognized arguments: --([^\s=]+)", message)
    if unknown or unrecognized:
        if unknown:
            name = ".".join([*keys, unknown.group(1) or unknown.group(2)])
            nearest = _nearest(name, [*known, *_class_settings(message, keys)])
        else:
            name = unrecognized.group(1)
            nearest = _nearest(name, known)
        # A key of a config or of --name=value; an option jsonargparse could not place at all.
        shown, kind = (name, "setting") if unknown else (f"--{name}", "option")
        if nearest:
            suggestion = nearest if unknown else f"--{nearest}"
            return f"unknown {kind} {shown}: did you mean {suggestion}? ({help_hint})"
        return f"unknown {kind} {shown}: {help_hint}"
    if not keys:
        return f"{' '.join(message.split()).rstrip('.')}: {help_hint}"
    problems = []
    for line in message.splitlines():
        line = _readable(line)
        if line and not line.startswith(_HOW_IT_SEARCHED) and line not in problems:
            problems.append(line)
    given = re.search(r"^\s*Given value: (.*)$", message, re.MULTILINE)
    if given and problems and ", got " not in problems[-1]:
        problems[-1] += f", got {given.group(1).strip()!r}"
    name = ".".join(keys).replace(".init_args.", ".")
    return f"{name}: {'; '.join(problems) or ' '.join(message.split())} ({help_hint})"
