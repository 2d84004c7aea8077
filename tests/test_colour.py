import numpy as np
import pytest

from cbir.core.colour import (
    bin_centres,
    bin_centres_in,
    bin_index,
    binned_colours,
    distinct_colours,
    group_colours,
    lab_to_srgb,
    srgb_to_lab,
    to_space,
)


def naive_lab(rgb):
    """CIELAB of one sRGB colour, written out from the standard formulas (D65)."""
    def linear(v):
        v = v / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(v) for v in rgb)
    x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b
    white = (0.95047, 1.0, 1.08883)

    def f(t):
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x / white[0]), f(y / white[1]), f(z / white[2])
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_lab_matches_naive_formula():
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (200, 3)).astype(np.uint8)
    ours = srgb_to_lab(colours)
    expected = np.array([naive_lab(c) for c in colours.astype(float)])
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=2e-3)


def test_lab_reference_colours():
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]], np.uint8))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=1e-3)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.01)  # sRGB red, widely tabulated


def test_lab_round_trip_is_exact_for_all_8bit_greys_and_random_colours():
    rng = np.random.default_rng(1)
    colours = np.concatenate([np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1),
                              rng.integers(0, 256, (5000, 3)).astype(np.uint8)])
    np.testing.assert_array_equal(lab_to_srgb(srgb_to_lab(colours)), colours)


def test_float_and_uint8_inputs_agree():
    colours = np.array([[10, 200, 30], [250, 5, 128]], np.uint8)
    np.testing.assert_allclose(srgb_to_lab(colours), srgb_to_lab(colours.astype(np.float64)), atol=1e-4)


def test_bins_count_every_pixel_and_average_their_colours():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    colours, counts = binned_colours(image, bits=3)
    assert counts.sum() == 30 * 40
    idx = bin_index(image, 3).ravel()
    naive = {}
    for b, px in zip(idx, image.reshape(-1, 3)):
        naive.setdefault(b, []).append(px)
    assert len(naive) == len(colours)
    for colour, b in zip(colours, sorted(naive)):
        np.testing.assert_allclose(colour, np.mean(naive[b], axis=0), rtol=1e-6)


def test_distinct_colours_match_numpy_unique():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (60, 70, 3)).astype(np.uint8)
    image[:20] = image[20:40]  # repeated colours
    colours, counts, inverse = distinct_colours(image)
    codes = image.reshape(-1, 3).astype(np.int64) @ [65536, 256, 1]
    unique, unique_counts = np.unique(codes, return_counts=True)
    ours = colours.astype(np.int64) @ [65536, 256, 1]
    order = np.argsort(ours)
    np.testing.assert_array_equal(ours[order], unique)
    np.testing.assert_array_equal(counts[order], unique_counts)
    np.testing.assert_array_equal(colours[inverse], image.reshape(-1, 3))


def test_grouping_in_two_steps_equals_grouping_at_once():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (50, 50, 3)).astype(np.uint8)
    direct = binned_colours(image, 4)
    colours, counts, _ = distinct_colours(image)
    means, mass = group_colours(colours, counts, 4)
    np.testing.assert_allclose(means, direct[0], rtol=1e-6)
    np.testing.assert_array_equal(mass, direct[1])
    assert mass.sum() == 2500


def test_bin_index_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        bin_index(np.zeros((2, 3), np.float32), 5)
    with pytest.raises(ValueError, match="shape"):
        bin_index(np.zeros((2, 4), np.uint8), 5)


@pytest.mark.parametrize("space", ["lab", "rgb"])
@pytest.mark.parametrize("bits", [1, 5, 6])
def test_bin_centres_in_a_space_are_those_converted_one_by_one(space, bits):
    expected = to_space(bin_centres(bits), space)
    found = bin_centres_in(bits, space)
    assert found.dtype == expected.dtype and found.tobytes() == expected.tobytes()  # bit for bit
