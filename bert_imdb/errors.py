"""The one exception type that the command line turns into a one-line message instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


def check_at_least(name: str, value: int | float | None, least: int | float, unset: bool = False) -> None:
    """Stop on a setting below its least sensible value when the classes are built, before any model is
    loaded or review tokenized (torch and Lightning would say it later, or not at all, in a traceback).

    Args:
        name: The setting as the command line names it (data.batch_size).
        value: Its value; None passes where `unset` allows it.
        least: The least value that works.
        unset: Whether the setting may be left unset (null).
    """
    if value is None and unset:
        return
    if value is None or value < least:
        fix = f"set it to {least} or more" + (", or leave it unset" if unset else "")
        raise UserError(f"{name}={value} is below {least}: {fix}")
