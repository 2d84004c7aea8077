"""One writer at a time: an advisory lock held by the process that writes an index database.

SQLite serialises transactions, not runs: two index runs interleaving their batches (each learning a codebook,
say) would leave a mixed index. The lock is a ``flock`` on a file beside the database, taken for a whole run;
readers never take it, and the kernel drops it when its holder dies, however it dies. The lock file is named after
the database's real path (symbolic links resolved): ``--db link.db`` and ``--db real.db`` are one database and one
lock (before, a symlinked path took a lock of its own, and two runs rebuilt one index at once).

The lock file exists only while a run holds it (the holder removes it before letting go), so no empty file is left
beside every database. Removing a lock file is safe with one rule: whoever takes the lock checks that the file it
locked is still the one at the path, else another process removed it in between, and it tries again. (The database
file itself cannot be flock'ed instead: closing any descriptor of it drops SQLite's own POSIX locks.)
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

from ..errors import BusyError, DatabaseError, Remedy


class WriterLock:
    """The writer lock of the database at ``path`` (the lock file is its real path + ``".lock"``); not re-entrant."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    @property
    def file(self) -> str:
        return os.path.realpath(self.path) + ".lock"

    def acquire(self) -> None:
        """Take the lock, or raise BusyError at once when another process holds it."""
        while True:
            try:
                handle = open(self.file, "a+")
            except OSError as error:
                raise DatabaseError(f"{self.path} cannot be written here (its lock file: {error.strerror})",
                                    remedy=Remedy.WRITABLE_COPY) from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise BusyError(f"another cbir index run is writing to {self.path}; wait for it to finish") from None
            try:
                current = os.stat(self.file)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(handle.fileno())):
                self._handle = handle
                return
            handle.close()  # the holder before removed the file after this process opened it: try a new one

    def release(self) -> None:
        """Let go of the lock if this object holds it, removing the lock file first."""
        if self._handle is not None:
            try:
                os.unlink(self.file)
            except FileNotFoundError:
                pass
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
