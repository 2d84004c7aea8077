import functools

import numpy as np
import pytest

from cbir.core.colour import to_space
from cbir.core.histogram import LAYOUTS, histogram, lookup_table, n_blocks, region_map
from cbir.core.kmeans import nearest_centre


def test_lookup_table_labels_bin_centres_with_their_nearest_colour():
    codebook = to_space(np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]], np.float32), "lab")
    lut = lookup_table(codebook, "lab", bits=4)
    centres = (np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * 16
    d = ((to_space(centres, "lab")[:, None] - codebook[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(lut, d.argmin(1))


def test_lookup_table_agrees_with_exact_assignment_on_most_pixels():
    rng = np.random.default_rng(0)
    codebook = to_space(rng.integers(0, 256, (64, 3)).astype(np.float32), "lab")
    pixels = rng.integers(0, 256, (20000, 3)).astype(np.uint8)
    lut = lookup_table(codebook, "lab")
    from cbir.core.colour import bin_index

    agreement = (lut[bin_index(pixels, 6)] == nearest_centre(to_space(pixels, "lab"), codebook)).mean()
    assert agreement > 0.9


@pytest.mark.parametrize("layout", LAYOUTS)
def test_histogram_blocks_are_shares_that_sum_to_one(photo, layout):
    codebook = to_space(np.array([[0, 0, 0], [255, 255, 255], [200, 50, 50], [50, 50, 200]], np.float32), "lab")
    lut = lookup_table(codebook, "lab")
    hist = histogram(photo, lut, 4, layout)
    assert hist.dtype == np.float32
    assert hist.shape == (n_blocks(layout) * 4,)
    np.testing.assert_allclose(hist.reshape(-1, 4).sum(1), 1.0, rtol=1e-6)


def test_histogram_counts_pixels_like_a_naive_loop(photo):
    codebook = to_space(np.array([[0, 0, 0], [255, 255, 255], [200, 50, 50]], np.float32), "lab")
    lut = lookup_table(codebook, "lab")
    regions, n = region_map(*photo.shape[:2], "2x2")
    expected = np.zeros((n, 3))
    for y in range(photo.shape[0]):
        for x in range(photo.shape[1]):
            r, g, b = (int(v) >> 2 for v in photo[y, x])
            expected[regions[y, x], lut[(r << 12) | (g << 6) | b]] += 1
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(histogram(photo, lut, 3, "2x2").reshape(n, 3), expected, rtol=1e-6)


def test_region_maps_cover_the_image():
    for layout in ("2x2", "3x3", "center"):
        regions, n = region_map(30, 41, layout)
        assert set(np.unique(regions)) == set(range(n))
    with pytest.raises(ValueError, match="layout"):
        region_map(3, 3, "diagonal")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_block_weights_give_regions_together_the_weight_of_the_whole_image(layout):
    from cbir.core.histogram import block_weights

    weights = block_weights(layout)
    assert weights.shape == (n_blocks(layout),)
    if layout.startswith("global+"):
        assert weights[0] == 1.0
        np.testing.assert_allclose(weights[1:].sum(), 1.0)
        np.testing.assert_allclose(weights[1:], weights[1])
    else:
        np.testing.assert_array_equal(weights, 1.0)


@functools.cache
def random_lut(n_colors):
    """The LUT of a random codebook of ``n_colors`` (read-only, so shared by the cases; building one takes ~0.3 s)."""
    rng = np.random.default_rng(n_colors)
    return lookup_table(to_space(rng.integers(0, 256, (n_colors, 3)).astype(np.float32), "lab"), "lab")


def random_lut_and_images(n_colors, noise_size, smooth_size, slope):
    """The LUT of a random codebook, and four images: noise, a noisy gradient (neighbours share colours, as in
    photos), one white pixel and a black strip."""
    rng = np.random.default_rng(n_colors)
    lut = random_lut(n_colors)
    rng.integers(0, 256, (n_colors, 3))  # the codebook's draw, so the images stay as they were
    ramp = np.mgrid[0 : smooth_size[0], 0 : smooth_size[1]][1][..., None] * slope
    smooth = np.clip(ramp + rng.normal(0, 20, (*smooth_size, 3)), 0, 255).astype(np.uint8)
    return lut, [rng.integers(0, 256, (*noise_size, 3)).astype(np.uint8), smooth, np.full((1, 1, 3), 255, np.uint8),
                 np.zeros((7, 2, 3), np.uint8)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n_colors", [3, 64, 300])
def test_opencv_counts_equal_the_numpy_reference(layout, n_colors):
    from cbir.core.histogram import region_counts

    lut, images = random_lut_and_images(n_colors, (31, 45), (37, 53), [5, 3, 1])
    for image in images:
        reference = region_counts(image, lut, n_colors, layout, method="numpy")
        np.testing.assert_array_equal(region_counts(image, lut, n_colors, layout, method="opencv"), reference)
        assert reference.sum() == image.shape[0] * image.shape[1]


@pytest.mark.parametrize("bits", [1, 4, pytest.param(7, marks=pytest.mark.slow)])
def test_opencv_counts_equal_the_numpy_reference_for_other_lut_sizes(photo, bits):
    from cbir.core.histogram import region_counts

    codebook = to_space(np.array([[0, 0, 0], [255, 255, 255], [200, 50, 50]], np.float32), "lab")
    lut = lookup_table(codebook, "lab", bits=bits)
    np.testing.assert_array_equal(region_counts(photo, lut, 3, "2x2", bits, method="opencv"),
                                  region_counts(photo, lut, 3, "2x2", bits, method="numpy"))


def test_writable_lut_or_odd_image_takes_the_numpy_path(photo):
    from cbir.core.histogram import region_counts

    codebook = to_space(np.array([[0, 0, 0], [255, 255, 255]], np.float32), "lab")
    lut = lookup_table(codebook, "lab")
    assert not lut.flags.writeable
    writable = lut.copy()
    np.testing.assert_array_equal(histogram(photo, writable, 2), histogram(photo, lut, 2))
    with pytest.raises(ValueError, match="read-only LUT"):
        region_counts(photo, writable, 2, method="opencv")
    strided = photo[::2, ::3]  # not contiguous: still the fast path, same counts
    np.testing.assert_array_equal(region_counts(strided, lut, 2, method="opencv"),
                                  region_counts(strided, lut, 2, method="numpy"))


def reference_histogram(image, lut, n_colors, layout):
    """The histogram as first written: float64 shares of the numpy reference counts, rounded to float32."""
    from cbir.core.histogram import region_counts

    counts = region_counts(image, lut, n_colors, layout, method="numpy").astype(np.float64)
    if layout.startswith("global+"):
        counts = np.vstack([counts.sum(0, keepdims=True), counts])
    return (counts / np.maximum(counts.sum(1, keepdims=True), 1)).astype(np.float32).ravel()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n_colors", [3, 128, 300])
def test_histogram_is_bit_identical_to_float64_shares_of_the_reference_counts(layout, n_colors):
    from helpers import WANG

    from cbir.imageio import read_image

    lut, images = random_lut_and_images(n_colors, (61, 83), (97, 131), [2, 1, 0.5])
    if (WANG / "7.jpg").exists():
        images.append(read_image(WANG / "7.jpg"))
    for image in images:
        fast = histogram(image, lut, n_colors, layout)
        assert fast.dtype == np.float32 and fast.tobytes() == reference_histogram(image, lut, n_colors, layout).tobytes()
