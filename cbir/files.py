"""Output files (pictures, pages) written whole or not at all."""

from __future__ import annotations

import os

from .errors import WriteError


def write_file(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed into place).

    Raises
    ------
    WriteError
        the file cannot be written (a missing folder, no permission, a full disk); nothing is left behind
    """
    path = os.fspath(path)
    temporary = f"{path}.partial-{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise WriteError(f"{path}: cannot write ({error.strerror or error})") from None


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` whole or not at all; see :func:`write_file`."""
    write_file(path, text.encode("utf-8"))


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work is done, an output path that :func:`write_file` could not write: its folder is
    missing or not a folder, the path is a folder, or the folder is not writable.

    Raises
    ------
    WriteError
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise WriteError(f"{path}: cannot write: the folder {folder} {what}")
    if os.path.isdir(path):
        raise WriteError(f"{path}: cannot write: it is a folder")
    if not os.access(folder, os.W_OK):
        raise WriteError(f"{path}: cannot write: no permission to write in {folder}")
