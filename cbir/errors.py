"""Every error cbir raises on purpose, in one place.

The library raises these with messages in Python terms. A face adds its own advice: the CLI prints
``Error: ...`` on stderr with exit code 1 and, when an error names a :class:`Remedy`, the command line that fixes
it instead of the Python advice. Numeric functions raise ``ValueError`` for malformed arrays (a programming
error, not user input).
"""

from __future__ import annotations

from enum import Enum


class Remedy(str, Enum):
    """What fixes an error, named so that each face can say it in its own terms."""

    CREATE = "create"  # there is no index database yet
    ADD = "add"  # the index has no codebook or no images yet
    REBUILD = "rebuild"  # the index cannot be used as it is: recompute it from the photos
    REBUILD_IF_DAMAGED = "rebuild-if-damaged"  # SQLite failed: a full disk, or a damaged file
    REBUILD_FOR_SETTINGS = "rebuild-for-settings"  # new histogram settings need every histogram recomputed
    ONE_WORKER = "one-worker"  # a worker process died: one process finds the file that kills it
    DATABASE_FILE = "database-file"  # a folder was given where the database file was expected
    CHECK = "check"  # the database changed under a query, or is damaged: check it
    REINDEX = "reindex"  # indexed files are gone or changed: indexing their folders again brings the index in step
    GIVE_COLOUR = "give-colour"  # a colour query without any colour
    RUN_AGAIN = "run-again"  # an index run stopped part-way: the same run again completes it
    INSTALL_CLUSTER = "install-cluster"  # a cluster run without Dask installed
    SHIP_BYTES = "ship-bytes"  # cluster workers that cannot see the files
    PRUNE = "prune"  # indexed files are missing on disk: forget them first
    FREE_SPACE = "free-space"  # the disk is full (or failed): what was finished is kept; free space and run again
    WRITABLE_COPY = "writable-copy"  # the database may be read here but not written


# Advice for a Python caller; the CLI has its own table (cbir/cli/output.py).
_PYTHON_ADVICE = {
    Remedy.CREATE: "make one with Index.open(path, create=True) and add photos with Index.add",
    Remedy.ADD: "add photos with Index.add(paths)",
    Remedy.REBUILD: "rebuild it with Index.add(paths, rebuild=True)",
    Remedy.REBUILD_IF_DAMAGED: "if the database is damaged, rebuild it with Index.add(paths, rebuild=True)",
    Remedy.REBUILD_FOR_SETTINGS: "pass rebuild=True to recompute every histogram with the new settings",
    Remedy.ONE_WORKER: "add the same paths again (what is finished is kept), with workers=1 to find a file that "
                       "crashes it",
    Remedy.DATABASE_FILE: "pass the path of the database file",
    Remedy.CHECK: "check it with Index.check(path)",
    Remedy.REINDEX: "forget the missing ones with Index.prune(); add their folders again to update the others",
    Remedy.GIVE_COLOUR: "e.g. parse_target(['#1e90ff:40'])",
    Remedy.RUN_AGAIN: "add the same paths again to complete the run",
    Remedy.INSTALL_CLUSTER: "install it with: pip install 'cbir[cluster]'",
    Remedy.SHIP_BYTES: "or send the files' bytes with ship_bytes=True",
    Remedy.PRUNE: "forget them first with Index.prune() (or Index.remove(paths)), or add their folders too",
    Remedy.FREE_SPACE: "free some disk space, then call it again (what was finished is kept)",
    Remedy.WRITABLE_COPY: "add photos to a copy of it in a folder you may write to",
}


class CbirError(Exception):
    """Base class: something the user can fix.

    Attributes
    ----------
    problem : str
        What is wrong, without advice.
    remedy : Remedy or None
        What fixes it; ``str(error)`` ends with the advice for a Python caller.
    """

    def __init__(self, problem: str, *, remedy: Remedy | None = None) -> None:
        self.problem = problem
        self.remedy = remedy
        advice = _PYTHON_ADVICE.get(remedy) if remedy is not None else None
        super().__init__(f"{problem}; {advice}" if advice else problem)


class DecodeError(CbirError):
    """A file could not be read as an image."""


class WriteError(CbirError):
    """An output file (an image, a page) could not be written."""


class DatabaseError(CbirError):
    """An index database is missing, empty, foreign, tampered with or made by another version."""


class BusyError(DatabaseError):
    """Another process holds the index database for writing."""


class SettingsError(CbirError):
    """A setting has a value cbir cannot use, or a change it cannot make without a rebuild."""


class ColourError(CbirError):
    """A colour or a colour query cannot be understood."""


class ClusterError(CbirError):
    """A Dask cluster that cannot be used: Dask not installed, the scheduler unreachable or gone mid-run, no
    workers, or workers unfit for the run."""


class EvaluationError(CbirError):
    """A labelled collection that cannot be evaluated (bad labels file, missing images...)."""


__all__ = ["BusyError", "CbirError", "ColourError", "DatabaseError", "DecodeError", "EvaluationError", "Remedy",
           "SettingsError", "WriteError"]
