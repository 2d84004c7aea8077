"""Image files in and out: reading and decoding photos, encoding pictures and palette images (indexed PNG, GIF:
our own small encoders, since OpenCV writes no palette images), written through :mod:`cbir.files`.

Files are read as bytes and decoded with OpenCV, so any file name works (spaces, quotes, unicode). Every image
comes out as ``(H, W, 3) uint8`` sRGB:

- grayscale is repeated over three channels;
- 16-bit samples are rounded to 8 bits (v / 257);
- an alpha channel is composited over white (transparent areas count as white paper, not as the hidden colour
  values or as black), unless the caller asks to keep it (``alpha=True``: ``(H, W, 4)``);
- JPEG EXIF orientation is applied; animated GIFs and multi-page TIFFs give their first frame;
- only regular files are read (a FIFO or a device named ``.jpg`` is refused without blocking), at most
  ``MAX_FILE_BYTES`` of them, and only when their first bytes are those of a format OpenCV decodes;
- images whose header declares more than ``MAX_PIXELS`` pixels are refused before decoding (decompression bombs);
  for the formats whose header cbir does not parse (JPEG 2000, AVIF, Radiance HDR...), OpenCV's own limit, set to
  the same number before cv2 is imported, refuses them after reading the header: no decode is ever unbounded;
- a decode that runs out of memory is a DecodeError like any other bad file, never a crash of the caller;
- a truncated JPEG (no end-of-image marker after its scan data) is refused rather than indexed half grey, whatever
  the OpenCV version does with it;
- the warnings codec libraries print about corrupt files (libpng, libjpeg, libtiff, OpenCV's log) are kept off the
  terminal: the caller reports the file once, with its reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import cv2
import numpy as np

from .errors import DecodeError, WriteError
from .files import write_file
from .limits import CV2_IMPORTED_FIRST, MAX_FILE_BYTES, MAX_PIXELS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# OpenCV >= 4.11 can have the JPEG decoder write RGB itself, which saves a BGR -> RGB pass over every pixel.
_COLOR_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def _jpeg_flags(factor):
    """imdecode flags of a JPEG decoded at 1/``factor`` scale, in RGB order where OpenCV can (else BGR)."""
    flags = _REDUCED_FLAGS.get(factor, cv2.IMREAD_COLOR)
    return flags if _COLOR_RGB is None else (flags & ~cv2.IMREAD_COLOR) | _COLOR_RGB


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height declared by a JPEG, PNG, GIF, BMP, TIFF or WebP header, without decoding; None if not
    found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        if _is_os2_bitmap(data):  # OS/2 1.x BITMAPCOREHEADER: 16-bit width and height
            return struct.unpack("<HH", data[18:22])
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _is_os2_bitmap(data):
    return data[:2] == b"BM" and data[14:18] == b"\x0c\x00\x00\x00"


_TIFF_INTEGERS = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 16: "Q", 17: "q"}  # field type: struct code


def _tiff_size(data):
    """ImageWidth and ImageLength of the first directory of a TIFF (the page OpenCV decodes)."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[offset : offset + 2])
        found = {}
        for i in range(count):
            entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
            tag, kind = struct.unpack(order + "HH", entry[:4])
            if tag in (256, 257) and kind in _TIFF_INTEGERS:  # libtiff accepts signed and 8-bit types too
                code = _TIFF_INTEGERS[kind]
                found[tag] = abs(struct.unpack(order + code, entry[8 : 8 + struct.calcsize(code)])[0])
    except struct.error:  # the file ends inside the header: the decoder reports it
        return None
    return (found[256], found[257]) if len(found) == 2 else None


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:  # extended format: 24-bit canvas width - 1 and height - 1
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:  # lossless: 14-bit width - 1, height - 1
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14 bits
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    return None


def _jpeg_markers(data):
    """``(marker, position)`` of each marker segment before the first scan, the start of scan included. Stray
    bytes before a marker are skipped as libjpeg skips them (with a warning), so a garbage byte cannot hide the
    frame header from the pixel limit."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        yield marker, pos
        if marker == 0xDA:
            return
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]


def _jpeg_size(data):
    for marker, pos in _jpeg_markers(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= len(data):  # start of frame
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
    return None


def _jpeg_truncated(data):
    """True when a JPEG's first scan is not followed by an end-of-image marker (FF D9 cannot occur inside
    entropy-coded data, where FF is always followed by 00 or a restart marker).

    The marker is searched backwards from the end (``rfind``): a whole file ends with it, so the answer costs
    a few bytes instead of a scan of the whole file (entropy-coded data is full of FF 00)."""
    for marker, pos in _jpeg_markers(data):
        if marker == 0xDA:  # start of scan
            return data.rfind(b"\xff\xd9", pos) < 0
    return True


def reduction_for(size: tuple[int, int] | None, min_side: int | None) -> int:
    """Largest JPEG DCT reduction (1, 2, 4 or 8) that keeps the short side at least ``min_side`` pixels."""
    if not min_side or size is None:
        return 1
    short = min(size)
    for factor in (8, 4, 2):
        if short // factor >= min_side:
            return factor
    return 1


def decode_image(data: bytes, *, min_side: int | None = None, name: str = "image", alpha: bool = False
                 ) -> np.ndarray:
    """Decode image file bytes to ``(H, W, 3) uint8`` sRGB.

    Parameters
    ----------
    data : bytes
    min_side : int or None, allow a JPEG to be decoded at 1/2, 1/4 or 1/8 scale while its short side stays
        at least this many pixels (decode time drops and colour histograms barely move); None decodes in full
    name : str, used in error messages
    alpha : bool, keep an alpha channel: ``(H, W, 4) uint8`` sRGB + straight alpha for an image that has one
        (instead of compositing it over white)

    Raises
    ------
    DecodeError
        empty, unreadable, truncated beyond decoding, too large, or an unsupported sample format

    Examples
    --------
    >>> import numpy as np
    >>> data = encode_image(np.full((3, 5, 3), 7, np.uint8), ".png")
    >>> decode_image(data).shape
    (3, 5, 3)
    >>> decode_image(b"")
    Traceback (most recent call last):
    ...
    cbir.errors.DecodeError: image: empty file (0 bytes)
    """
    return decode_with_size(data, min_side=min_side, name=name, alpha=alpha)[0]


def decode_with_size(data: bytes, *, min_side: int | None = None, name: str = "image", alpha: bool = False
                     ) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_image`, and the image's full-size ``(width, height)``: from its header (also when a JPEG was
    decoded at a reduced scale), else from the decoded image. Saves the caller a second parse of the header."""
    if not data:
        raise DecodeError(f"{name}: empty file (0 bytes)")
    is_jpeg = data[:2] == b"\xff\xd8"
    if is_jpeg and _jpeg_truncated(data):
        raise DecodeError(f"{name}: truncated JPEG (the data ends before the end-of-image marker)")
    size = header_size(data)
    if size is not None:
        width, height = size
        if width == 0 or height == 0:
            raise DecodeError(f"{name}: header declares an empty image ({width}x{height})")
        if width * height > MAX_PIXELS:
            raise DecodeError(f"{name}: header declares {width}x{height} pixels, over the limit of {MAX_PIXELS:,}")
    elif not _opencv_limit_in_force():
        raise DecodeError(f"{name}: image size unknown (a format whose header cbir does not read) and OpenCV's "
                          "pixel limit is not in force (cv2 was imported before cbir without "
                          f"OPENCV_IO_MAX_IMAGE_PIXELS <= {MAX_PIXELS}); not decoded")
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        with native_stderr_silenced():
            if is_jpeg:  # no alpha or 16-bit in baseline JPEG; IMREAD_COLOR applies EXIF orientation and CMYK
                image = cv2.imdecode(buffer, _jpeg_flags(reduction_for(size, min_side)))
            elif _is_os2_bitmap(data):  # no alpha either; unchanged, OpenCV reads 24-bit ones as one channel
                image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            else:
                image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if image is None or image.size == 0:
            raise DecodeError(f"{name}: not a readable image (unknown format, or corrupt or truncated data)")
        if not (is_jpeg and _COLOR_RGB is not None):  # else (H, W, 3) uint8 RGB already
            image = _to_srgb8(image, name, alpha)
    except cv2.error as error:
        raise DecodeError(f"{name}: {_opencv_reason(error)}") from None
    except MemoryError:
        raise DecodeError(f"{name}: not enough memory to decode it") from None
    return image, size or (image.shape[1], image.shape[0])


def _opencv_reason(error):
    """What an OpenCV decoding error means, in a few words."""
    text = str(error)
    if "validateInputImageSize" in text:
        return f"image over the limit of {MAX_PIXELS:,} pixels (found by the decoder)"
    if "Insufficient memory" in text or "Failed to allocate" in text:
        return "not enough memory to decode it"
    return f"not a readable image ({text.strip().splitlines()[-1]})"


_limit_checked = None


def _opencv_limit_in_force():
    """Whether OpenCV refuses images over MAX_PIXELS by itself. Known when this module set the limit before
    importing cv2; otherwise found once by decoding a bare BMP header just over the limit (nothing is decoded:
    either the limit refuses it, or the missing pixel data does)."""
    global _limit_checked
    if not CV2_IMPORTED_FIRST:
        return True
    if _limit_checked is None:
        width = 1 << 20  # OpenCV's own width limit
        header = struct.pack("<IiiHHIIiiII", 40, width, MAX_PIXELS // width + 1, 1, 24, 0, 0, 0, 0, 0, 0)
        probe = b"BM" + struct.pack("<IHHI", 14 + len(header), 0, 0, 14 + len(header)) + header
        try:
            with native_stderr_silenced():
                cv2.imdecode(np.frombuffer(probe, np.uint8), cv2.IMREAD_UNCHANGED)
            _limit_checked = False
        except cv2.error as error:
            _limit_checked = "validateInputImageSize" in str(error)
    return _limit_checked


_silence_lock = threading.Lock()
_silence_depth = 0
_saved_stderr = None
_devnull = None  # opened once and kept: opening it each time was almost half the cost of a silencing


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null for the duration (codec libraries print
    warnings such as ``libpng error: IDAT: CRC error`` about the very files cbir reports itself).

    Process-wide: nested and concurrent uses share one redirection, restored when the last one ends. Python's
    ``sys.stderr`` is flushed first so nothing already written is lost. Does nothing when fd 2 is not open.
    """
    global _silence_depth, _saved_stderr, _devnull
    with _silence_lock:
        if _silence_depth == 0:
            try:
                sys.stderr.flush()
            except (AttributeError, OSError, ValueError):  # no usable sys.stderr: nothing to flush
                pass
            try:
                saved = os.dup(2)
            except OSError:  # fd 2 is closed: nothing to silence
                saved = None
            if saved is not None:
                if _devnull is None:
                    _devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(_devnull, 2)
                _saved_stderr = saved
        _silence_depth += 1
    try:
        yield
    finally:
        with _silence_lock:
            _silence_depth -= 1
            if _silence_depth == 0 and _saved_stderr is not None:
                os.dup2(_saved_stderr, 2)
                os.close(_saved_stderr)
                _saved_stderr = None


# A large decoded image is converted a strip of rows at a time: converting it whole took temporaries of 16 bytes a
# pixel (float32 alpha blending: 6.5 GB for a 121-megapixel 16-bit RGBA PNG). Each strip gets the same arithmetic.
_CONVERT_STRIP_PIXELS = 1 << 20


def _to_srgb8(image, name, alpha=False):
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise DecodeError(f"{name}: unsupported sample format {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels not in (1, 3, 4):
        raise DecodeError(f"{name}: unsupported channel count {channels}")
    if image.dtype == np.uint8 and channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: no second copy of a large image
    height, width = image.shape[:2]
    keep_alpha = alpha and channels == 4
    rgb = np.empty((height, width, 4 if keep_alpha else 3), np.uint8)
    step = max(1, _CONVERT_STRIP_PIXELS // width)
    for start in range(0, height, step):
        rgb[start : start + step] = _strip_to_srgb8(image[start : start + step], keep_alpha)
    return rgb


def _strip_to_srgb8(image, keep_alpha=False):
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 3:
        return image[:, :, ::-1]
    if keep_alpha:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2RGBA)
    opacity = image[:, :, 3:4].astype(np.float32) / 255.0
    rgb = image[:, :, 2::-1].astype(np.float32)
    return np.rint(rgb * opacity + 255.0 * (1.0 - opacity)).astype(np.uint8)


# First bytes of every format this OpenCV may decode (whatever a file is named): anything else is refused before
# the rest of the file is read.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
               b"II+\x00", b"MM\x00+", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"#?RADIANCE",
               b"#?RGBE", b"\x59\xa6\x6a\x95", b"\x76\x2f\x31\x01", b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n",
               *(b"P%d" % n for n in range(1, 8)), b"PF", b"Pf")


def is_image_signature(head: bytes) -> bool:
    """Whether ``head``, the first bytes of a file (16 or more), starts like an image OpenCV can decode."""
    return (head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or head[4:8] == b"ftyp")  # ISO base media: AVIF, HEIF


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is not a regular file ("a FIFO (named pipe)", "a character
    device"...), or None for a regular file."""
    for test, kind in _FILE_KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: str | os.PathLike[str], what: str = "an image file") -> BinaryIO:
    """Open a regular file for reading, unbuffered; never blocks and never reads a device.

    A FIFO, a device, a socket or a directory is refused: checked before opening (a device is not even opened)
    and again on the open file (the name may have been swapped meanwhile), which is opened with O_NONBLOCK so that
    opening a FIFO returns at once.

    Raises
    ------
    DecodeError
        no such file, a broken or looping symbolic link, no permission, or not a regular file
    """
    path = os.fspath(path)
    try:
        kind = not_a_regular_file(os.stat(path).st_mode)
        if kind:
            raise DecodeError(f"{path}: is {kind}, not {what}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        reason = "broken symbolic link (its target does not exist)" if os.path.islink(path) else "no such file"
        raise DecodeError(f"{path}: {reason}") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DecodeError(f"{path}: symbolic link loop") from None
        if error.errno == errno.ENAMETOOLONG:
            raise DecodeError(f"{path}: path too long for the system to open") from None
        raise DecodeError(f"{path}: cannot read ({error.strerror or error})") from None
    kind = not_a_regular_file(os.fstat(fd).st_mode)
    if kind:
        os.close(fd)
        raise DecodeError(f"{path}: is {kind}, not {what}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb", buffering=0)


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of an image file: a regular file (:func:`open_regular`) of at most ``limit`` bytes that starts
    like an image (:func:`is_image_signature`), checked before the rest is read."""
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise DecodeError(f"{os.fspath(path)}: {_size_text(size)}, over the limit of {_size_text(limit)} for an "
                              "image file")
        head = os.pread(handle.fileno(), 16, 0)
        if head and not is_image_signature(head):
            raise DecodeError(f"{os.fspath(path)}: not an image file (unknown format)")
        try:
            data = handle.read(size + 1)  # one read of the size found; a growing file is read on, to the limit
            while len(data) > size and len(data) <= limit:
                more = handle.read(min(1 << 20, limit + 1 - len(data)))
                if not more:
                    break
                data += more
        except OSError as error:
            raise DecodeError(f"{os.fspath(path)}: cannot read ({error.strerror or error})") from None
    if len(data) > limit:
        raise DecodeError(f"{os.fspath(path)}: over the limit of {_size_text(limit)} for an image file")
    return data


def _size_text(size):
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.1f} MiB"


def read_image(path: str | os.PathLike[str], *, min_side: int | None = None, alpha: bool = False) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` sRGB (``(H, W, 4)`` with ``alpha`` for an image that has an
    alpha channel). See :func:`decode_image`."""
    return decode_image(read_bytes(path), min_side=min_side, name=os.fspath(path), alpha=alpha)


def encode_image(rgb: np.ndarray, extension: str = ".png") -> bytes:
    """Encode ``(H, W, 3) uint8`` sRGB (or ``(H, W, 4)`` with alpha, for formats that hold it) as image file bytes
    of the format named by ``extension``."""
    order = cv2.COLOR_RGBA2BGRA if np.ndim(rgb) == 3 and np.shape(rgb)[2] == 4 else cv2.COLOR_RGB2BGR
    try:
        ok, encoded = cv2.imencode(extension, cv2.cvtColor(np.ascontiguousarray(rgb), order))
    except cv2.error:
        ok = False
    if not ok:
        raise WriteError(f"cannot write {extension!r} images; use .png, .jpg, .bmp, .tif or .webp")
    return encoded.tobytes()


def write_image(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write ``(H, W, 3) uint8`` sRGB to ``path``, the format chosen by its extension, whole or not at all."""
    path = os.fspath(path)
    write_file(path, encode_image(rgb, os.path.splitext(path)[1].lower() or ".png"))


PNG_LEVEL = 6  # zlib level of palette PNGs: 9 was 0.1-0.6% smaller and 1.4-4.5x slower on the Kodak images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_bit_depth(colours: int) -> int:
    """The smallest PNG bit depth (1, 2, 4 or 8) whose indices hold ``colours`` palette entries."""
    for depth in (1, 2, 4, 8):
        if colours <= 1 << depth:
            return depth
    raise ValueError(f"a palette image holds at most 256 colours, got {colours}")


def _check_palette_image(labels, palette):
    labels = np.asarray(labels)
    palette = np.asarray(palette)
    if (palette.ndim != 2 or palette.shape[1] not in (3, 4) or palette.dtype != np.uint8
            or not 1 <= len(palette) <= 256):
        raise ValueError(f"palette must be (K, 3) or (K, 4) uint8 with 1 <= K <= 256, got {palette.shape} "
                         f"{palette.dtype}")
    if labels.ndim != 2 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty (H, W) integer array, got {labels.shape} {labels.dtype}")
    if labels.min() < 0 or labels.max() >= len(palette):
        raise ValueError(f"labels must index the palette: 0 .. {len(palette) - 1}")
    return labels, palette


def encode_palette_png(labels: np.ndarray, palette: np.ndarray, *, level: int = PNG_LEVEL) -> bytes:
    """Encode a palette image as an indexed PNG (colour type 3).

    The bit depth is the smallest that holds the palette (1, 2, 4 or 8 bits per pixel); rows are stored
    unfiltered (filter type 0: palette indices are labels, not intensities, and the other filters made every
    Kodak test image larger); an alpha column in the palette becomes a tRNS chunk (the palette should list its
    translucent entries first to keep that chunk short).

    Parameters
    ----------
    labels : (H, W) int, palette index of every pixel
    palette : (K, 3) or (K, 4) uint8, sRGB (and straight alpha), K <= 256
    level : int, zlib compression level

    Returns
    -------
    bytes, the PNG file
    """
    labels, palette = _check_palette_image(labels, palette)
    height, width = labels.shape
    depth = palette_bit_depth(len(palette))
    indices = labels.astype(np.uint8)
    if depth < 8:  # pack 8 // depth pixels into each byte, the first in the high bits
        per_byte = 8 // depth
        padded = np.zeros((height, -(-width // per_byte) * per_byte), np.uint8)
        padded[:, :width] = indices
        grouped = padded.reshape(height, -1, per_byte)
        indices = np.zeros(grouped.shape[:2], np.uint8)
        for i in range(per_byte):
            indices |= grouped[:, :, i] << (8 - depth * (i + 1))
    rows = np.empty((height, indices.shape[1] + 1), np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:] = indices
    chunks = [b"\x89PNG\r\n\x1a\n",
              _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 3, 0, 0, 0)),
              _png_chunk(b"PLTE", np.ascontiguousarray(palette[:, :3]).tobytes())]
    if palette.shape[1] == 4:
        translucent = np.flatnonzero(palette[:, 3] < 255)
        if len(translucent):
            chunks.append(_png_chunk(b"tRNS", palette[:translucent[-1] + 1, 3].tobytes()))
    chunks += [_png_chunk(b"IDAT", zlib.compress(rows.tobytes(), level)), _png_chunk(b"IEND", b"")]
    return b"".join(chunks)


def encode_gif(labels: np.ndarray, palette: np.ndarray) -> bytes:
    """Encode a palette image as a GIF (89a, one frame).

    GIF has one fully transparent palette entry and no partial transparency: with an alpha column, entries with
    alpha below 128 become that one transparent entry, the others opaque.

    Parameters
    ----------
    labels : (H, W) int
    palette : (K, 3) or (K, 4) uint8, K <= 256

    Returns
    -------
    bytes, the GIF file
    """
    labels, palette = _check_palette_image(labels, palette)
    height, width = labels.shape
    if width > 65535 or height > 65535:
        raise ValueError(f"GIF images are at most 65535 pixels a side, got {width}x{height}")
    transparent = None
    if palette.shape[1] == 4:
        clear = np.flatnonzero(palette[:, 3] < 128)
        if len(clear):
            transparent = int(clear[0])
            remap = np.arange(len(palette))
            remap[clear] = transparent
            labels = remap[labels]
    depth = max(1, (len(palette) - 1).bit_length())
    table = np.zeros((1 << depth, 3), np.uint8)
    table[:len(palette)] = palette[:, :3]
    code_size = max(2, depth)
    data = _lzw(np.ascontiguousarray(labels, np.uint8).tobytes(), code_size)
    blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255))
    parts = [b"GIF89a", struct.pack("<HHBBB", width, height, 0x80 | (depth - 1), 0, 0), table.tobytes()]
    if transparent is not None:  # graphic control extension: transparent colour index
        parts.append(struct.pack("<BBBBHBB", 0x21, 0xF9, 4, 1, 0, transparent, 0))
    parts += [struct.pack("<BHHHHB", 0x2C, 0, 0, width, height, 0), bytes([code_size]), blocks, b"\x00;"]
    return b"".join(parts)


def _lzw(data: bytes, code_size: int) -> bytes:
    """GIF's variable-width LZW of ``data``: codes from a dictionary loop, bits packed in numpy.

    Codes start ``code_size + 1`` bits wide and widen as the table grows, up to 12 bits; a full table (4096
    codes) is cleared. The dictionary maps ``prefix code << 8 | next index`` to a code.
    """
    clear = 1 << code_size
    first_free = clear + 2
    codes = [clear]
    widths = [(0, code_size + 1)]  # (position in codes, width from there on)
    table = {}
    next_code, width, limit = first_free, code_size + 1, 1 << (code_size + 1)
    pixels = iter(data)
    prefix = next(pixels)
    append = codes.append
    for pixel in pixels:
        key = prefix << 8 | pixel
        code = table.get(key)
        if code is not None:
            prefix = code
            continue
        append(prefix)
        if next_code < 4096:
            table[key] = next_code
            next_code += 1
            if next_code > limit and width < 12:  # the decoder adds its entry one code later
                width, limit = width + 1, limit << 1
                widths.append((len(codes), width))
        else:
            append(clear)
            table = {}
            next_code, width, limit = first_free, code_size + 1, 1 << (code_size + 1)
            widths.append((len(codes), width))
        prefix = pixel
    codes += [prefix, clear + 1]
    values = np.asarray(codes, np.uint32)
    starts = [start for start, _ in widths] + [len(codes)]
    bit_widths = np.repeat([w for _, w in widths], np.diff(starts))
    bits = ((values[:, None] >> np.arange(12, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bits[np.arange(12) < bit_widths[:, None]], bitorder="little").tobytes()


PALETTE_FORMATS = (".png", ".gif")


def write_palette_image(path: str | os.PathLike[str], labels: np.ndarray, palette: np.ndarray) -> None:
    """Write a palette image to ``path`` as an indexed PNG or a GIF (by its extension), whole or not at all.

    Parameters
    ----------
    path : .png or .gif file
    labels : (H, W) int, palette index of every pixel
    palette : (K, 3) or (K, 4) uint8, sRGB (and straight alpha), K <= 256

    Raises
    ------
    WriteError
        another extension, or the file cannot be written
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".png":
        data = encode_palette_png(labels, palette)
    elif extension == ".gif":
        data = encode_gif(labels, palette)
    else:
        raise WriteError(f"{path}: palette images are written as .png or .gif, not {extension or 'no extension'!r}")
    write_file(path, data)


def read_thumbnail(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """A picture of an image file whose longest side is at most ``size``: ``(h, w, 3) uint8``.

    JPEGs are decoded at a reduced scale where that keeps ``size`` pixels, then shrunk with area averaging.

    Raises
    ------
    DecodeError
        the file cannot be read as an image
    """
    return decode_thumbnail(read_bytes(path), size, name=os.fspath(path))


def decode_thumbnail(data: bytes, size: int, *, name: str = "image") -> np.ndarray:
    """:func:`read_thumbnail` of image file bytes (with the same guards as :func:`decode_image`)."""
    image = decode_image(data, min_side=size, name=name)
    h, w = image.shape[:2]
    if max(h, w) <= size:
        return image
    scale = size / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
