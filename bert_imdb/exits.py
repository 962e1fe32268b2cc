"""How a command ends when it did not do what was asked: one line on stderr and a non-zero status, for bad
input, a disk that cannot be written and a signal, instead of a traceback."""

import errno
import inspect
import re
import signal
import sys
import threading

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.multiprocessing import ProcessRaisedException

from bert_imdb.errors import UserError
from bert_imdb.resume.stop_on_signal import StopOnSignal

# What a full, read-only or forbidden disk raises, wherever the write was (a logger's events, a config, a
# results file): each ends in one line. Checkpoints, exports and predictions say their own path.
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def keep_write_errors_of_threads() -> list[OSError]:
    """A full disk met by a writer thread (TensorBoard's events) is kept for the command to end on, in its
    one line, instead of a traceback printed from the thread. The hook is installed once per process."""
    _FAILED_WRITES.clear()
    if threading.excepthook is not _keep_write_errors:
        _keep_write_errors.default = threading.excepthook
        threading.excepthook = _keep_write_errors
    return _FAILED_WRITES


_FAILED_WRITES: list[OSError] = []


def _keep_write_errors(args) -> None:
    if isinstance(args.exc_value, OSError) and args.exc_value.errno in WRITE_ERRORS:
        _FAILED_WRITES.append(args.exc_value)
    else:
        _keep_write_errors.default(args)


def one_line_of(err: BaseException) -> str | None:
    """The one line `err` ends a command in, or None for an error that is a bug (its traceback shows)."""
    if isinstance(err, OSError):
        if err.errno not in WRITE_ERRORS:
            return None
        where = f" {err.filename}" if err.filename else ""
        return (
            f"cannot write{where} ({err.strerror}): free space there, or point the run's outputs at a "
            "writable disk (--trainer.logger.init_args.save_dir, --trainer.default_root_dir)"
        )
    if isinstance(err, ProcessRaisedException):
        return _said_by_a_started_process(err)
    cause = _user_error_in(err)
    message = str(cause) if cause is not None else _class_not_built(err)
    return None if message is None else " ".join(message.split())


def _said_by_a_started_process(err: ProcessRaisedException) -> str | None:
    """The one line of a process that `ddp_fork` or `ddp_spawn` started: torch hands its error back only as
    the text of its traceback, whose last line is the error's class and message."""
    last = (str(err).strip().splitlines() or [""])[-1]
    said = re.fullmatch(r"(?:bert_imdb\.errors\.UserError|[\w.]*\.MisconfigurationException): (.+)", last)
    return said.group(1) if said else None


def _user_error_in(err: BaseException | None) -> Exception | None:
    """The UserError behind `err`, or Lightning's MisconfigurationException (its message names a bad
    Trainer setting): jsonargparse re-raises errors of the classes it builds as a ValueError listing every
    type it tried, which would bury the one line that matters."""
    while err is not None and not isinstance(err, (UserError, MisconfigurationException)):
        if _names_a_trainer_setting(err):
            return err
        err = err.__cause__ or err.__context__
    return err


def _class_not_built(err: BaseException) -> str | None:
    """A class the config names (a logger, say) whose constructor failed: jsonargparse says it as a
    ValueError listing every type the setting accepts, the constructor's own error as its cause."""
    union = "Does not validate against any of the Union subtypes"
    if not (isinstance(err, ValueError) and str(err).startswith(union) and err.__cause__ is not None):
        return None
    named = re.search(r"class_path='([\w.]+)'", str(err))
    what = named.group(1) if named else "a class of the config"
    reason = (str(err.__cause__).strip().splitlines() or [type(err.__cause__).__name__])[0]
    return f"{what} could not be built: {reason}"


def _names_a_trainer_setting(err: BaseException) -> bool:
    """A ValueError raised inside Lightning that names a Trainer argument in backticks: a setting Lightning
    could check only once the data was known (`val_check_interval` above an epoch's batches, say)."""
    if type(err) is not ValueError:
        return False
    frame = err.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    raised_in = frame.tb_frame.f_globals.get("__name__", "") if frame is not None else ""
    named = set(re.findall(r"`(\w+)`", str(err)))
    return raised_in.startswith("lightning.") and bool(named & set(inspect.signature(L.Trainer).parameters))


def exit_if_stopped_by_signal(cli) -> None:
    """A fit StopOnSignal stopped ends in one line saying where its checkpoint is, and a non-zero status."""
    trainer = getattr(cli, "trainer", None)
    stop = next((c for c in getattr(trainer, "callbacks", []) if isinstance(c, StopOnSignal)), None)
    if stop is None or stop.stopped is None:
        return
    signum, step, path = stop.stopped
    name = signal.Signals(signum).name
    saved = (
        f"saved {path}; continue with the same command and --ckpt_path last"
        if path is not None
        else "no checkpoint saved (checkpointing is off)"
    )
    if trainer.is_global_zero:
        print(f"error: fit stopped by {name} at step {step}: {saved}", file=sys.stderr)
    raise SystemExit(128 + signum)
