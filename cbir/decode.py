"""Image files in and out: the only module that reads or writes image files.

Files are read as bytes and decoded with OpenCV, so any file name works (spaces, quotes, unicode). Every image
comes out as ``(H, W, 3) uint8`` sRGB:

- grayscale is repeated over three channels;
- 16-bit samples are rounded to 8 bits (v / 257);
- an alpha channel is composited over white (transparent areas count as white paper, not as the hidden colour
  values or as black);
- JPEG EXIF orientation is applied; animated GIFs and multi-page TIFFs give their first frame;
- images whose header declares more than ``MAX_PIXELS`` pixels are refused before decoding (decompression bombs).
"""

import os
import struct

import cv2
import numpy as np

from .errors import DecodeError

MAX_PIXELS = 128_000_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def header_size(data):
    """Width and height declared by a JPEG, PNG, GIF or BMP header, without decoding; None if not found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data):
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def reduction_for(size, min_side):
    """Largest JPEG DCT reduction (1, 2, 4 or 8) that keeps the short side at least ``min_side`` pixels."""
    if not min_side or size is None:
        return 1
    short = min(size)
    for factor in (8, 4, 2):
        if short // factor >= min_side:
            return factor
    return 1


def decode_image(data, *, min_side=None, name="image"):
    """Decode image file bytes to ``(H, W, 3) uint8`` sRGB.

    Parameters
    ----------
    data : bytes
    min_side : int or None, allow a JPEG to be decoded at 1/2, 1/4 or 1/8 scale while its short side stays
        at least this many pixels (decode time drops and colour histograms barely move); None decodes in full
    name : str, used in error messages

    Raises
    ------
    DecodeError
        empty, unreadable, truncated beyond decoding, too large, or an unsupported sample format
    """
    if not data:
        raise DecodeError(f"{name}: empty file (0 bytes)")
    size = header_size(data)
    if size is not None:
        width, height = size
        if width == 0 or height == 0:
            raise DecodeError(f"{name}: header declares an empty image ({width}x{height})")
        if width * height > MAX_PIXELS:
            raise DecodeError(f"{name}: header declares {width}x{height} pixels, over the limit of {MAX_PIXELS:,}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    is_jpeg = data[:2] == b"\xff\xd8"
    try:
        if is_jpeg:  # no alpha or 16-bit in baseline JPEG; IMREAD_COLOR applies EXIF orientation and CMYK
            factor = reduction_for(size, min_side)
            image = cv2.imdecode(buffer, _REDUCED_FLAGS.get(factor, cv2.IMREAD_COLOR))
        else:
            image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise DecodeError(f"{name}: not a readable image ({str(error).strip().splitlines()[-1]})") from None
    if image is None or image.size == 0:
        raise DecodeError(f"{name}: not a readable image (unknown format, or corrupt or truncated data)")
    return _to_srgb8(image, name)


def _to_srgb8(image, name):
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DecodeError(f"{name}: unsupported sample format {image.dtype}")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        rgb = image[:, :, 2::-1].astype(np.float32)
        return np.rint(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    raise DecodeError(f"{name}: unsupported channel count {channels}")


def read_bytes(path):
    """Read a file's bytes, turning OS errors into DecodeError."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except IsADirectoryError:
        raise DecodeError(f"{path}: is a directory, not an image file") from None
    except FileNotFoundError:
        raise DecodeError(f"{path}: no such file") from None
    except OSError as error:
        raise DecodeError(f"{path}: cannot read ({error.strerror or error})") from None


def read_image(path, *, min_side=None):
    """Read an image file as ``(H, W, 3) uint8`` sRGB. See :func:`decode_image`."""
    return decode_image(read_bytes(path), min_side=min_side, name=os.fspath(path))


def encode_image(rgb, extension=".png"):
    """Encode ``(H, W, 3) uint8`` sRGB as image file bytes of the format named by ``extension``."""
    try:
        ok, encoded = cv2.imencode(extension, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise DecodeError(f"cannot write {extension!r} images; use .png, .jpg, .bmp, .tif or .webp")
    return encoded.tobytes()


def write_image(path, rgb):
    """Write ``(H, W, 3) uint8`` sRGB to ``path``, the format chosen by its extension.

    The file is written whole or not at all (a temporary file renamed into place).
    """
    path = os.fspath(path)
    data = encode_image(rgb, os.path.splitext(path)[1].lower() or ".png")
    temporary = f"{path}.partial-{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise DecodeError(f"{path}: cannot write ({error.strerror or error})") from None
