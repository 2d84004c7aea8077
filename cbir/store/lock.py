"""One writer at a time: an advisory lock held by the process that writes an index database.

SQLite serialises transactions, not runs: two index runs interleaving their batches (each learning a codebook,
say) would leave a mixed index. The lock is a ``flock`` on a file beside the database, taken for a whole run;
readers never take it, and the kernel drops it when its holder dies, however it dies. The lock file is named after
the database's real path (symbolic links resolved): ``--db link.db`` and ``--db real.db`` are one database and one
lock (before, a symlinked path took a lock of its own, and two runs rebuilt one index at once).
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

from ..errors import BusyError, DatabaseError, Remedy


class WriterLock:
    """The writer lock of the database at ``path`` (the lock file is ``path + ".lock"``); not re-entrant."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise BusyError at once when another process holds it."""
        try:
            handle = open(os.path.realpath(self.path) + ".lock", "a+")
        except OSError as error:
            raise DatabaseError(f"{self.path} cannot be written here (its lock file: {error.strerror})",
                                remedy=Remedy.WRITABLE_COPY) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise BusyError(f"another cbir index run is writing to {self.path}; wait for it to finish") from None
        self._handle = handle

    def release(self) -> None:
        """Let go of the lock if this object holds it."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
