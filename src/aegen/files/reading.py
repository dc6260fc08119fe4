"""Reading one file that aegen wrote, safely: a plain file (no link, no FIFO) of bounded size,
parsed as JSON with errors that name the file. Every run-folder file is read through
read_run_file or files/tensors.py's read_tensors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from aegen.errors import RunError

MAX_FILE_BYTES = 64 * 2**20  # config, history and scores are kilobytes, pictures a few hundred


def read_run_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a run-folder file; a symbolic link (it may point anywhere outside the run
    folder), anything but a plain file and a file over limit bytes are refused (RunError)."""
    if not os.path.lexists(path):
        raise RunError(f"{path} is missing; the run is incomplete")
    check_plain_file(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)  # no link swapped in since the check
    with os.fdopen(os.open(path, flags), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RunError(f"{path} is over {limit // 2**20} MiB: not a file aegen wrote")
    return data


def check_plain_file(path: Path) -> None:
    """Refuse a symbolic link and anything but a regular file (reading a FIFO would block)."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise RunError(
            f"{path} is a symbolic link; aegen reads no run-folder file through a link "
            "(put the file itself there)"
        )
    if not stat.S_ISREG(mode):
        raise RunError(f"{path} is not a regular file")


def parse_json(path: Path, data: bytes, where: str = "") -> Any:
    """JSON from bytes, or a RunError that names the file (and where in it)."""
    place = f"{path} ({where})" if where else str(path)
    try:
        return json.loads(data)
    except RecursionError:
        raise RunError(f"{place} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # also a decoding error or a number of 5,000 digits
        raise RunError(f"{place} is not valid JSON ({exc})") from exc


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KINDS = {str: "a string", int: "a whole number", float: "a number", dict: "a JSON object"}
_CONTAINERS: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}


def json_field(path: Path, section: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """section[key], which must be there and of kind (float: any number; int and float: no bool)."""
    if key not in section:
        raise RunError(f"{path} is incomplete: it has no {where}{key}")
    value = section[key]
    if kind is float:
        fits = is_number(value)
    else:
        fits = isinstance(value, kind) and not isinstance(value, bool)
    if not fits:
        found = _CONTAINERS.get(type(value)) or json.dumps(value)  # a number, true/false, null
        raise RunError(f"{path}: {where}{key} must be {_KINDS[kind]}, not {found}")
    return value
