"""Output files (pictures, pages, the search cache) written whole or not at all, and safely in a shared folder.

What is at the output path decides how it is written:

- nothing, or a regular file: the data goes to a temporary file made in the same folder under a name no one can
  plant a link at (``tempfile``: ``O_EXCL``, so an existing name or a symbolic link is never followed), which takes
  the mode (and, where allowed, the owner) of the file it replaces, or the umask's default for a new file, and is
  renamed over it when complete. Before, the temporary was ``PATH.partial-PID``, predictable and opened following
  links: another user's planted link made a root run overwrite a file of the planter's choosing;
- a symbolic link: it stays a link; the file it points to is replaced as above (in that file's folder);
- a FIFO or a character device (``-o /dev/stdout``, a link to ``/proc/self/fd/1``, a terminal): written through,
  opened without blocking (a FIFO no process reads is an error, not a hang);
- a directory, a block device or a socket: refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from .errors import WriteError


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (see the module's description).

    Raises
    ------
    WriteError
        the file cannot be written (a missing folder, no permission, a full disk, a FIFO no one reads, a
        directory); nothing is left behind
    """
    with replacing(path) as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` whole or not at all; see :func:`write_file`."""
    write_file(path, text.encode("utf-8"))


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write the new content of ``path`` to, in pieces: it takes the place of ``path`` when the
    block ends normally, and is removed when it does not (an error, Ctrl-C). See the module's description."""
    path = os.fspath(path)
    found = _stat_or_none(path)
    if found is not None and not stat.S_ISREG(found.st_mode):
        with _written_through(path, found.st_mode) as handle:
            yield handle
        return
    with _temporary_beside(path, found) as (fd, _):
        with os.fdopen(fd, "wb") as handle:
            yield handle


@contextlib.contextmanager
def replacing_by_name(path: str | os.PathLike[str]) -> Iterator[str]:
    """The name of a new empty file beside ``path``, made as :func:`replacing` makes its temporaries, for a library
    that writes files by name (usearch): it takes the place of ``path`` when the block ends normally, and is
    removed when it does not. ``path`` is a regular file (a link to one stays a link) or missing."""
    path = os.fspath(path)
    found = _stat_or_none(path)
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise WriteError(f"{path}: cannot write (not a regular file)")
    with _temporary_beside(path, found) as (fd, temporary):
        os.close(fd)
        yield temporary


@contextlib.contextmanager
def _temporary_beside(path: str, found: os.stat_result | None) -> Iterator[tuple[int, str]]:
    """``(fd, name)`` of a new file in the folder of the file ``path`` names (``tempfile``: O_EXCL, never following a
    link), with the mode of ``found``, the file it replaces: it takes that file's place when the block ends
    normally and is removed when it does not. The caller closes ``fd`` before the block ends."""
    target = os.path.realpath(path)  # a link stays a link: the file it names is replaced
    try:
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.",
                                         suffix=".partial")
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({_reason(error)})") from None
    try:
        try:
            _take_mode(fd, found)
        except OSError:
            os.close(fd)
            raise
        yield fd, temporary
        os.replace(temporary, target)
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({_reason(error)})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _take_mode(fd, replaced):
    """Give a new file the mode of the file it replaces (and its owner and group, where this process may), or
    what the umask leaves of 0666 (mkstemp makes it 0600)."""
    if replaced is None:
        os.fchmod(fd, 0o666 & ~_umask())
        return
    os.fchmod(fd, stat.S_IMODE(replaced.st_mode))
    if (replaced.st_uid, replaced.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, replaced.st_uid, replaced.st_gid)


def _umask():
    """This process's umask, read without changing it (os.umask can only set it) where Linux shows it."""
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/self/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("Umask:")), 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _written_through(path, mode):
    """An existing FIFO or character device opened for writing, without blocking on a FIFO no one reads."""
    if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        kind = "a directory" if stat.S_ISDIR(mode) else "a block device" if stat.S_ISBLK(mode) else "a socket"
        raise WriteError(f"{path}: is {kind}, not a file; give the path of a file")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        reason = "no process reads this FIFO" if error.errno == errno.ENXIO else _reason(error)
        raise WriteError(f"{path}: cannot write ({reason})") from None
    os.set_blocking(fd, True)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({_reason(error)})") from None


def _reason(error):
    return error.strerror or str(error)


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work is done, an output path that :func:`write_file` could not write: its folder is
    missing or not a folder, the path is a folder (or a block device, a socket), or the folder is not writable. A
    FIFO or a character device is written through: nothing to check here.

    Raises
    ------
    WriteError
    """
    path = os.fspath(path)
    found = _stat_or_none(path)
    if found is not None and (stat.S_ISFIFO(found.st_mode) or stat.S_ISCHR(found.st_mode)):
        return
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise WriteError(f"{path}: cannot write: it is a folder")
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise WriteError(f"{path}: cannot write: it is not a file")
    folder = os.path.dirname(os.path.realpath(path))  # where the temporary is made: the real file's folder
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise WriteError(f"{path}: cannot write: the folder {folder} {what}")
    if not os.access(folder, os.W_OK):
        raise WriteError(f"{path}: cannot write: no permission to write in {folder}")


def _stat_or_none(path: str) -> os.stat_result | None:
    """What ``path`` is, through links (/proc's included), or None when nothing is there."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({_reason(error)})") from None


def open_regular(path: str | os.PathLike[str]) -> int:
    """A file descriptor of ``path`` opened for reading, if it is a regular file; OSError otherwise (missing, or a
    FIFO, device, folder). Opened without blocking, so that a FIFO planted under a name cbir reads never hangs it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{os.fspath(path)}: not a regular file")
    os.set_blocking(fd, True)
    return fd
