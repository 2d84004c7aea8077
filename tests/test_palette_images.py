"""Indexed PNG and GIF files: they decode back to exactly the palette image, at the smallest bit depth."""

import struct
import zlib

import cv2
import numpy as np
import pytest

from cbir.errors import WriteError
from cbir.imageio import (decode_image, encode_gif, encode_palette_png, palette_bit_depth, read_image,
                          write_palette_image)


def random_palette_image(k, shape, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, shape)
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    return labels, palette


def chunks(png):
    """(type, data) of every chunk, checking each CRC."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, found = 8, []
    while position < len(png):
        (length,) = struct.unpack(">I", png[position:position + 4])
        kind, data = png[position + 4:position + 8], png[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", png[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + data)
        found.append((kind, data))
        position += 12 + length
    return found


@pytest.mark.parametrize("k, depth", [(1, 1), (2, 1), (3, 2), (4, 2), (5, 4), (16, 4), (17, 8), (256, 8)])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 9), (33, 64)])
def test_png_decodes_to_the_same_pixels_at_the_smallest_depth(k, depth, shape):
    labels, palette = random_palette_image(k, shape)
    png = encode_palette_png(labels, palette)
    found = dict(chunks(png))
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", found[b"IHDR"][:10])
    assert (width, height, bit_depth, colour_type) == (shape[1], shape[0], depth, 3) == (shape[1], shape[0],
                                                                                          palette_bit_depth(k), 3)
    assert found[b"PLTE"] == palette.tobytes() and b"tRNS" not in found
    np.testing.assert_array_equal(decode_image(png), palette[labels])


def test_png_with_alpha_has_a_short_trns_chunk_and_decodes_exactly():
    labels, palette = random_palette_image(6, (9, 11), channels=4)
    palette[:, 3] = [0, 128, 255, 255, 255, 255]  # translucent entries first
    png = encode_palette_png(labels, palette)
    assert dict(chunks(png))[b"tRNS"] == bytes([0, 128])
    np.testing.assert_array_equal(decode_image(png, alpha=True), palette[labels])
    opaque = palette.copy()
    opaque[:, 3] = 255
    assert b"tRNS" not in dict(chunks(encode_palette_png(labels, opaque)))


@pytest.mark.parametrize("k", [1, 2, 4, 16, 100, 256])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (40, 70)])
def test_gif_round_trip(k, shape):
    labels, palette = random_palette_image(k, shape, seed=k)
    gif = encode_gif(labels, palette)
    assert gif[:6] == b"GIF89a" and gif[-1:] == b";"
    np.testing.assert_array_equal(decode_image(gif), palette[labels])


def test_gif_long_runs_and_full_code_tables():
    # a flat image (long runs, codes up to 12 bits) and noise (the 4096-code table fills and is cleared)
    flat = np.zeros((300, 400), np.int64)
    noise, palette = random_palette_image(256, (300, 400), seed=3)
    for labels in (flat, noise):
        np.testing.assert_array_equal(decode_image(encode_gif(labels, palette)), palette[labels])


def test_gif_transparency_is_one_entry():
    labels, palette = random_palette_image(4, (6, 6), channels=4)
    palette[:, 3] = [255, 0, 255, 100]  # entries 1 and 3 become the one transparent entry
    gif = encode_gif(labels, palette)
    decoded = cv2.imdecode(np.frombuffer(gif, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded.ndim == 3 and decoded.shape[2] == 4:  # OpenCV builds that keep GIF transparency
        assert ((decoded[..., 3] == 0) == np.isin(labels, [1, 3])).all()
    assert b"\x21\xf9\x04\x01" in gif  # graphic control extension with the transparency flag


def test_write_palette_image_by_extension(tmp_path):
    labels, palette = random_palette_image(8, (10, 12))
    for name in ("a.png", "b.GIF"):
        write_palette_image(tmp_path / name, labels, palette)
        np.testing.assert_array_equal(read_image(tmp_path / name), palette[labels])
    with pytest.raises(WriteError, match=r"\.png or \.gif"):
        write_palette_image(tmp_path / "c.jpg", labels, palette)
    assert not (tmp_path / "c.jpg").exists()


@pytest.mark.parametrize("labels, palette", [
    (np.zeros((2, 2), int), np.zeros((257, 3), np.uint8)),
    (np.full((2, 2), 3), np.zeros((3, 3), np.uint8)),
    (np.zeros((2, 2), int), np.zeros((3, 2), np.uint8)),
    (np.zeros((0, 2), int), np.zeros((3, 3), np.uint8)),
    (np.zeros((2, 2), float), np.zeros((3, 3), np.uint8)),
])
def test_rejects_malformed_palette_images(labels, palette):
    with pytest.raises(ValueError):
        encode_palette_png(labels, palette)
    with pytest.raises(ValueError):
        encode_gif(labels, palette)
