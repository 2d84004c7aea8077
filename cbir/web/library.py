"""The web app's door to the index: one read-only :class:`cbir.Index` for searching, shared by every request (its
loaded histograms are large) and used by one request at a time, and a small read-only Index per server thread for
the quick look-ups of pages and thumbnails, so they never wait behind a search."""

import contextlib
import threading

from ..index import Index


class Library:
    """Opened once per app; :meth:`close` closes every connection it opened."""

    def __init__(self, db_path):
        self.db_path = db_path
        self._search_index = Index.open(db_path, read_only=True)  # checks the file now: a clear error at start
        self._search_lock = threading.Lock()
        self._local = threading.local()
        self._opened = [self._search_index]
        self._opened_lock = threading.Lock()

    @contextlib.contextmanager
    def searching(self):
        """The shared Index, for one request at a time (loading and searching its histograms)."""
        with self._search_lock:
            yield self._search_index

    def lookup(self):
        """This thread's own read-only Index, for look-ups that need no search (folders, image records)."""
        index = getattr(self._local, "index", None)
        if index is None:
            index = self._local.index = Index.open(self.db_path, read_only=True)
            with self._opened_lock:
                self._opened.append(index)
        return index

    def close(self):
        with self._opened_lock:
            for index in self._opened:
                index.close()
            self._opened.clear()
