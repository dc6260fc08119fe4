"""Errors a user can cause. Each carries one sentence that says what went wrong and what to do.

The CLI prints that sentence and exits with status 2; the library raises them as they are.
"""


class AegenError(Exception):
    """Base class: a problem with the user's input, files or options, not a bug in aegen."""


class DataError(AegenError):
    """A data set is missing, corrupt, fails its checksum or cannot be downloaded."""


class ConfigError(AegenError):
    """An option or configuration value is unknown or out of range."""


class RunError(AegenError):
    """A run folder or checkpoint is missing, incomplete, foreign or unreadable."""


class TrainingError(AegenError):
    """Training cannot go on (for example the loss became NaN)."""


class Interrupted(AegenError):
    """Training was stopped by Ctrl-C or SIGTERM; the message says what the run folder keeps."""


def first_line(exc: BaseException, most: int = 160) -> str:
    """An exception's first line, shortened: torch's messages may run to a page of C++ frames,
    and a one-line error quotes only their start."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:most]
