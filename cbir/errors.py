"""The one exception hierarchy of cbir.

The library raises these; the CLI turns them into ``Error: ...`` on stderr with exit code 1.
Numeric functions raise ``ValueError`` for malformed arrays (a programming error, not user input).
"""


class CbirError(Exception):
    """Base class: something the user can fix, with a message that says how."""


class DecodeError(CbirError):
    """A file could not be read as an image."""


class DatabaseError(CbirError):
    """An index database is missing, empty, foreign, tampered with or made by another version."""


class BusyError(DatabaseError):
    """Another process holds the index database for writing."""
