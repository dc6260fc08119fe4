"""One writer per run folder: `aegen train` holds RUN/.lock while it writes the folder.

The lock is an advisory `flock` on that file, so the kernel drops it when its holder dies for
any reason (kill -9 included): a stale lock is simply taken over by the next writer, nothing to
clean up by hand. The file holds the holder's PID, which a refused second writer names.
On systems without fcntl (Windows) the folder is not locked.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from aegen.errors import RunError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"


class RunFolderLock:
    """Hold the run folder's lock for a `with` block; a second holder gets a one-line RunError."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.path = Path(run_dir), Path(run_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunFolderLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(
                f"cannot write the run folder {self.run_dir} ({exc.strerror or exc})"
            ) from exc
        if fcntl is None:
            return self
        while True:
            # O_NOFOLLOW: a symlink planted as .lock must not make us truncate its target.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise RunError(
                    f"{self.run_dir} is being written by another aegen process "
                    f"(PID {holder}); wait for it to end or stop it"
                ) from None
            # The holder before us may have removed the file as we opened it: lock the file
            # that is at the path now, or two writers would each hold a different file.
            try:
                held, current = os.fstat(fd), os.stat(self.path)
                same = (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)  # releases the lock: nothing of ours is held after an error
            raise RunError(f"cannot write {self.path} ({exc.strerror or exc})") from exc
        self.fd = fd
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before unlocking: see the inode check above
            os.close(self.fd)
            self.fd = None


def orphan_files(run_dir: Path) -> list[Path]:
    """Temporary files a killed writer left behind (write_atomic's `.NAME.*.tmp`); only safe to
    remove while holding the lock."""
    return [p for p in Path(run_dir).glob(".*.tmp") if p.is_file()]


def remove_orphans(run_dir: Path) -> None:
    """Delete the temporary files of earlier, killed writers (call with the lock held)."""
    for path in orphan_files(run_dir):
        path.unlink(missing_ok=True)
