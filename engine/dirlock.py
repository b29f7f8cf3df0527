"""One owner per data directory: an exclusive inter-process lock on ``<data>/LOCK``.

LMDB environments, WAL segments and the catalog assume a single process writes them; a
second process opening the same directory (a server and ``tessera demo``, a server and an
offline restore) deletes or rewrites files under the first one, which goes on
acknowledging writes to files that are gone. So whoever opens a data directory holds
``fcntl.flock(LOCK_EX | LOCK_NB)`` on its ``LOCK`` file for as long as it has it open, and
writes its PID there so the one refused can be told who to stop.

Why ``flock`` rather than ``fcntl``/``lockf`` record locks: a record lock is dropped when
the process closes *any* descriptor of the file (POSIX), which library code does behind
our back; a ``flock`` lock belongs to the open file description and lives until that is
closed or the process dies — the kernel releases it on ``kill -9``, so there are no stale
locks to clean up.

Within one process the lock is re-entrant: a tool that takes it before doing anything to
the directory (``tessera serve``, ``demo``, ``backups restore``) and the engine it then
opens share one descriptor, counted; the flock goes when the last holder releases. (Two
descriptors of one process would conflict, ``flock(2)``.) So the lock keeps *processes*
apart; within a process, :meth:`engine.Engine.open` is the owner.

The ``LOCK`` file is never deleted (deleting it would let two processes lock two
different inodes under one name); its content is emptied on release.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

from engine.errors import DataDirectoryInUseError

__all__ = ["DirectoryLock", "LOCK_FILE_NAME", "holder_pid"]

LOCK_FILE_NAME = "LOCK"

# This process's held locks: real path of the directory -> [descriptor, holders].
_held: dict[str, list[int]] = {}
_held_guard = threading.Lock()


def holder_pid(data_dir: str | os.PathLike[str]) -> int | None:
    """The PID written in ``data_dir/LOCK`` (the last holder's, if nobody holds it now)."""
    try:
        text = (Path(data_dir) / LOCK_FILE_NAME).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


def _in_use(data_dir: Path) -> DataDirectoryInUseError:
    pid = holder_pid(data_dir)
    who = f"process {pid}" if pid is not None else "another process (PID not yet written)"
    what_to_do = (
        f"stop the process with PID {pid}, or use another --data directory"
        if pid is not None
        else "stop the process using it, or use another --data directory"
    )
    return DataDirectoryInUseError(
        f"data directory {data_dir} is in use by {who}: {what_to_do}",
        path=str(data_dir),
        pid=pid,
    )


class DirectoryLock:
    """Exclusive lock on a data directory, held from :meth:`acquire` to :meth:`release`.

    ``DirectoryLock(path).acquire()`` creates ``path`` if needed (``create=False`` to
    refuse a missing directory instead), never waits, and raises
    :class:`~engine.errors.DataDirectoryInUseError` naming the holder's PID when another
    process holds it. Use as a context manager to hold it for a block. Each object holds
    the lock at most once; objects of one process on one directory share it (see above).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._key = ""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, create: bool = True) -> DirectoryLock:
        """Take the lock (idempotent for this object); returns ``self``."""
        if self._fd is not None:
            return self
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such data directory", str(self.path))
        key = os.path.realpath(self.path)
        with _held_guard:
            held = _held.get(key)
            if held is not None:
                held[1] += 1
                self._fd, self._key = held[0], key
                return self
            self._fd = self._lock_file()
            self._key = key
            _held[key] = [self._fd, 1]
        return self

    def _lock_file(self) -> int:
        lock_path = self.path / LOCK_FILE_NAME
        # O_RDWR without O_TRUNC: the holder's PID must survive our failed attempt.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(self.path) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            # A read-only volume can still be locked; only the PID hint is lost.
            pass
        return fd

    def release(self) -> None:
        """Drop the lock (idempotent). The PID is erased first, so the next holder's
        PID is the only one ever read from a held lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with _held_guard:
            held = _held[self._key]
            held[1] -= 1
            if held[1] > 0:
                return
            del _held[self._key]
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            finally:
                os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DirectoryLock({str(self.path)!r}, held={self.held})"

    @staticmethod
    def check_free(path: str | os.PathLike[str]) -> None:
        """Raise :class:`DataDirectoryInUseError` if someone holds ``path``'s lock; creates
        nothing (a missing directory or lock file is free). For callers that must refuse
        before doing any work, then let :meth:`engine.Engine.open` take the lock itself."""
        lock_path = Path(path) / LOCK_FILE_NAME
        with _held_guard:
            if os.path.realpath(path) in _held:
                return  # this process holds it
        try:
            fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except NotADirectoryError:
            return  # ``path`` is a file: the caller's open reports that
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(Path(path)) from None
        finally:
            os.close(fd)
