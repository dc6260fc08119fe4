"""Atomic file writes: a temporary file beside the target, fsync, then rename.

A crash leaves either the old file or the new one, never half of one, so a run folder can always
be trusted by the next command that reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"  # write_atomic's files before their rename: .NAME.PID.RANDOM.tmp
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give; mkstemp alone makes files private (0600)


def write_atomic(path: str | Path, payload: bytes, durable: bool = True) -> None:
    """Replace path with payload in one step. A failure (a full disk, a read-only folder, an
    interrupt) leaves the old file as it was and no temporary file; an OSError names path.
    durable=False skips the fsyncs, for caches: a power cut may lose the file, never half of it
    for a reader that checks it (a lost cache costs a recomputation)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The writer's PID in the name: the next writer tells a live one's file from an orphan.
        prefix = f".{path.name}.{os.getpid()}."
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=TEMPORARY_SUFFIX)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)


def write_json(path: str | Path, value: Any) -> None:
    """Write value as indented JSON, atomically."""
    write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
