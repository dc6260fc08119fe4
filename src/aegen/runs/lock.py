"""Writers of a run folder take RUN/.lock: exclusively where they may collide with any other
(`train`, `evaluate`), shared where they only add files derived from the run that writers of
their kind write alike (`sample`, `pictures`, `score`, `export`, `report` into the folder).
A writer that cannot have the lock is refused in one line naming the holder's PID.

The lock is an advisory `flock` on that file, so the kernel drops it when its holder dies for
any reason (kill -9 included): a stale lock is simply taken over by the next writer, nothing to
clean up by hand. An exclusive holder writes its PID into the file. On taking the lock, a
writer removes the temporary files of writers that are gone (their PID is in the file's name),
never one of a live process. On systems without fcntl (Windows) the folder is not locked.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType

from aegen.errors import RunError
from aegen.files.atomic import TEMPORARY_SUFFIX

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"


class RunFolderLock:
    """Hold the run folder's lock for a `with` block; a second holder gets a one-line RunError.

    shared: writers of a kind that cannot collide hold it together (a folder aegen cannot
    write into is then read without the lock: nothing will be written there)."""

    def __init__(self, run_dir: Path, shared: bool = False):
        self.run_dir, self.path, self.shared = Path(run_dir), Path(run_dir) / LOCK, shared
        self.fd: int | None = None

    def __enter__(self) -> RunFolderLock:
        if not self.shared:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunError(
                    f"cannot write the run folder {self.run_dir} ({exc.strerror or exc})"
                ) from exc
        if fcntl is None:
            return self
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        while True:
            # O_NOFOLLOW: a symlink planted as .lock must not make us truncate its target.
            try:
                fd = os.open(
                    self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644
                )
            except OSError as exc:
                if self.shared and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                    return self  # a read-only folder: nothing of it will be written
                raise RunError(f"cannot write {self.path} ({exc.strerror or exc})") from exc
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                who = f"(PID {holder})" if holder else "(one adding samples or pictures to it)"
                raise RunError(
                    f"{self.run_dir} is being written by another aegen process "
                    f"{who}; wait for it to end or stop it"
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
            if not self.shared:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            remove_orphans(self.run_dir)
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
            if not self.shared or self._alone():  # a shared one's file stays while others hold it
                self.path.unlink(missing_ok=True)  # before unlocking: see the inode check above
            os.close(self.fd)
            self.fd = None

    def _alone(self) -> bool:
        """Whether this shared holder is the last: then it may remove the file as an exclusive
        holder does (it takes the lock exclusively to know)."""
        assert self.fd is not None and fcntl is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def orphan_files(run_dir: Path) -> list[Path]:
    """Temporary files of writers that are gone: write_atomic's `.NAME.PID.RANDOM.tmp` whose
    process has ended, and those an older aegen named without a PID (it wrote only under the
    exclusive lock, which no one holds while a writer looks)."""
    found = []
    for path in Path(run_dir).glob(f".*{TEMPORARY_SUFFIX}"):
        pid = _writer_pid(path.name)
        if path.is_file() and (pid is None or not _alive(pid)):
            found.append(path)
    return found


def remove_orphans(run_dir: Path) -> None:
    """Delete the temporary files of earlier, killed writers (call with the lock held)."""
    for path in orphan_files(run_dir):
        path.unlink(missing_ok=True)


def _writer_pid(name: str) -> int | None:
    """The PID in `.NAME.PID.RANDOM.tmp`, or None (a file of an older aegen, or another's)."""
    parts = name[: -len(TEMPORARY_SUFFIX)].split(".")
    return int(parts[-2]) if len(parts) >= 4 and parts[-2].isdigit() else None


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists (a reused PID is taken for the writer: kept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or no such number
        return True
    return True
