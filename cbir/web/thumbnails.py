"""Thumbnails of indexed images, made once and kept beside the database (``<database>-thumbnails/``), named by the
SHA-256 of the photo's content: a photo that changes gets a new thumbnail, an unchanged one is never decoded again.

The file read is the one the index recorded for an image id, never a path from a request. When the file on disk no
longer has the size and modification time recorded, its content is hashed again, so a changed photo is never shown
with the old photo's thumbnail. When the folder cannot be written (a read-only share), thumbnails are made each time.
"""

import hashlib
import os
import stat
import tempfile

from ..errors import DecodeError
from ..imageio import decode_thumbnail, encode_image

MAX_FILE_BYTES = 1 << 30  # a photo file larger than this is not read to make a picture of it


def read_photo(path):
    """The bytes of an indexed photo file: a regular file only (a FIFO or device planted under its name would
    block or never end), at most ``MAX_FILE_BYTES``; DecodeError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise DecodeError(f"{path}: cannot read ({error.strerror or error})") from None
    with os.fdopen(fd, "rb", buffering=0) as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DecodeError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise DecodeError(f"{path}: {info.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,}")
        return handle.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]


def picture(data, size, name):
    """JPEG bytes of an image file's bytes, its longest side at most ``size`` (never enlarged)."""
    return encode_image(decode_thumbnail(data, size, name=name), ".jpg")


class Thumbnails:
    """``get(info)``: the JPEG bytes of the thumbnail of a :class:`cbir.index.ImageInfo`."""

    def __init__(self, db_path, size=240, folder=None):
        self.size = size
        self.folder = folder or os.path.abspath(db_path) + "-thumbnails"
        self.writable = True

    def _file(self, sha256):
        return os.path.join(self.folder, sha256[:2], f"{sha256}-{self.size}.jpg")

    def get(self, info):
        """Thumbnail bytes; DecodeError when the photo cannot be read now."""
        data, sha256 = None, info.sha256
        try:
            current = os.stat(info.path)
            unchanged = current.st_size == info.size and current.st_mtime_ns == info.mtime_ns
        except OSError:
            unchanged = False
        if not unchanged or not _is_hash(sha256):  # changed since indexed: name it by what it holds now
            data = read_photo(info.path)
            sha256 = hashlib.sha256(data).hexdigest()
        path = self._file(sha256)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError:
            pass
        thumbnail = picture(read_photo(info.path) if data is None else data, self.size, info.stored_path)
        self._keep(path, thumbnail)
        return thumbnail

    def _keep(self, path, thumbnail):
        if not self.writable:
            return
        part = None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix=".part", delete=False) as handle:
                part = handle.name
                handle.write(thumbnail)
            os.replace(part, path)  # whole or not at all: two requests for one photo both end well
        except OSError:
            self.writable = False  # a read-only folder or a full disk: serve thumbnails without keeping them
            if part is not None and os.path.exists(part):
                os.unlink(part)


def _is_hash(text):
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)
