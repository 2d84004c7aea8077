import struct
import zlib

import cv2
import numpy as np
import pytest

from cbir.errors import DecodeError, WriteError
from cbir.imageio import (
    MAX_PIXELS,
    decode_image,
    encode_image,
    header_size,
    read_image,
    reduction_for,
    write_image,
)


def png_bytes(array):
    ok, data = cv2.imencode(".png", array)
    return data.tobytes()


def test_colour_image_comes_out_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    write_image(tmp_path / "red.png", rgb)
    image = read_image(tmp_path / "red.png")
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, rgb)


def test_grayscale_is_repeated_over_three_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    image = decode_image(png_bytes(gray))
    assert image.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], gray)


def test_16bit_is_rounded_to_8bit():
    deep = np.array([[0, 257, 65535, 32896]], np.uint16)  # 0, 1, 255, 128 in 8 bits
    image = decode_image(png_bytes(deep))
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 255, 128])


def test_alpha_is_composited_over_white():
    bgra = np.zeros((1, 3, 4), np.uint8)
    bgra[0, :, 2] = 255  # red
    bgra[0, :, 3] = [255, 0, 128]  # opaque, transparent, half
    image = decode_image(png_bytes(bgra))
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(image[0, 1], [255, 255, 255])
    np.testing.assert_allclose(image[0, 2], [255, 127, 127], atol=1)


def test_empty_garbage_and_missing_files_are_decode_errors(tmp_path):
    with pytest.raises(DecodeError, match="empty file"):
        decode_image(b"", name="x.png")
    with pytest.raises(DecodeError, match="not a readable image"):
        decode_image(b"hello world, not an image", name="x.png")
    with pytest.raises(DecodeError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(DecodeError, match="directory"):
        read_image(tmp_path / "dir.jpg")


def test_enormous_declared_dimensions_are_refused_before_decoding():
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    data = header + struct.pack(">I", zlib.crc32(header[12:]) & 0xFFFFFFFF)
    assert header_size(data) == (100000, 100000) and 100000 * 100000 > MAX_PIXELS
    with pytest.raises(DecodeError, match="over the limit"):
        decode_image(data, name="bomb.png")


def test_jpeg_header_size_and_reduced_decode():
    rgb = np.random.default_rng(0).integers(0, 256, (400, 640, 3)).astype(np.uint8)
    data = encode_image(rgb, ".jpg")
    assert header_size(data) == (640, 400)
    assert reduction_for((640, 400), 192) == 2
    assert reduction_for((640, 400), 100) == 4  # 400 / 4 = 100 still keeps the short side
    assert reduction_for((640, 400), 101) == 2
    assert reduction_for((640, 400), None) == 1
    assert decode_image(data, min_side=100).shape == (100, 160, 3)
    assert decode_image(data).shape == (400, 640, 3)


def test_write_image_refuses_unknown_format(tmp_path):
    with pytest.raises(WriteError, match="cannot write"):
        write_image(tmp_path / "x.unknown", np.zeros((2, 2, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
