"""Forgetting files: ``remove`` named files or folders, ``prune`` every indexed file that is gone from disk.

Both take the writer lock and change the index in one transaction, whether the files are on disk or not (a
renamed folder, a deleted photo, an unplugged drive).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import CbirError


@dataclass
class RemovalReport:
    """What was forgotten: ``images`` (paths of indexed images, as they open from the caller's working directory)
    and ``failures`` (paths of files recorded as unreadable); ``dry_run``: nothing was changed."""

    images: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would forget" if self.dry_run else "forgot"
        return f"{verb} {len(self.images)} images and {len(self.failures)} failed files"


def _indexed(store):
    """Every stored path (images, then failures) with its absolute path on disk."""
    images = [(p, os.path.abspath(store.disk_path(p))) for p in store.known_images()]
    failures = [(p, os.path.abspath(store.disk_path(p))) for p in store.known_failures()]
    return images, failures


def _forget(store, images, failures, dry_run):
    if not dry_run:
        store.write_batch(removed=[p for p, _ in images + failures])
    return RemovalReport([disk for _, disk in images], [disk for _, disk in failures], dry_run)


def named_by(disk, wanted):
    """Whether the absolute path ``disk`` is ``wanted`` or lies under the folder ``wanted``."""
    return disk == wanted or disk.startswith(wanted.rstrip(os.sep) + os.sep)


def remove_paths(store, paths: Sequence[str], dry_run: bool = False) -> RemovalReport:
    """Forget the indexed files named, and every indexed file under the folders named.

    Raises
    ------
    CbirError
        a path names nothing the index holds (then nothing is forgotten)
    """
    store.lock_for_writing()
    try:
        images, failures = _indexed(store)
        wanted = [os.path.abspath(p) for p in paths]

        def named(disk):
            return any(named_by(disk, w) for w in wanted)

        unknown = [p for p, w in zip(paths, wanted) if not any(named_by(disk, w) for _, disk in images + failures)]
        if unknown:
            raise CbirError(f"the index holds nothing at {', '.join(map(str, unknown))}; nothing was removed")
        return _forget(store, [e for e in images if named(e[1])], [e for e in failures if named(e[1])], dry_run)
    finally:
        store.unlock()


def _missing(path):
    """Whether a path is gone from disk: it, or a folder on the way to it, does not exist. A file that cannot be
    looked at (no permission, an I/O error) is not called missing."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno in (errno.ENOENT, errno.ENOTDIR)
    return False


def prune(store, dry_run: bool = False) -> RemovalReport:
    """Forget every indexed file (and recorded failure) that is missing on disk."""
    store.lock_for_writing()
    try:
        images, failures = _indexed(store)
        return _forget(store, [e for e in images if _missing(e[1])], [e for e in failures if _missing(e[1])],
                       dry_run)
    finally:
        store.unlock()
