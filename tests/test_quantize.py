import numpy as np
import pytest

from cbir.core.colour import to_space
from cbir.core.quantize import mean_delta_e, quantize, rgb_mse


def naive_kmeans_all_pixels(pixels, centres, iterations=300):
    """Plain unweighted Lloyd over every pixel: the textbook method the core must match or beat."""
    centres = centres.astype(np.float64).copy()
    for _ in range(iterations):
        labels = ((pixels[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.array([pixels[labels == j].mean(0) if np.any(labels == j) else centres[j]
                        for j in range(len(centres))])
        if np.allclose(new, centres):
            break
        centres = new
    return centres


def pixel_inertia(pixels, centres):
    return ((pixels[:, None, :] - centres[None].astype(np.float64)) ** 2).sum(-1).min(1).sum()


@pytest.mark.parametrize("space", ["lab", "rgb"])
@pytest.mark.parametrize("k", [2, 5, 9])
def test_matches_or_beats_naive_kmeans_from_the_same_start(photo, space, k):
    pixels = to_space(photo.reshape(-1, 3), space).astype(np.float64)
    start = pixels[np.random.default_rng(k).choice(len(pixels), k, replace=False)]
    ours = quantize(photo, k, space=space, init=start)
    naive = naive_kmeans_all_pixels(pixels, start)
    # From the same start, weighted k-means over the distinct colours is k-means over every pixel: equal or lower.
    assert pixel_inertia(pixels, ours.palette) <= pixel_inertia(pixels, naive) * (1 + 1e-9)
    # The default (k-means++ restarts on a bin pyramid) may land in another local optimum; it must be as good
    # within half a percent as the naive run from random pixels.
    default = quantize(photo, k, space=space)
    assert pixel_inertia(pixels, default.palette) <= pixel_inertia(pixels, naive) * 1.005


def test_every_pixel_gets_its_nearest_palette_colour(photo):
    q = quantize(photo, 7)
    pixels = to_space(photo.reshape(-1, 3), "lab").astype(np.float64)
    d2 = ((pixels[:, None, :] - q.palette[None].astype(np.float64)) ** 2).sum(-1)
    chosen = d2[np.arange(len(d2)), q.labels.ravel()]
    np.testing.assert_allclose(chosen, d2.min(1), rtol=1e-4, atol=1e-3)


def test_result_shapes_dtypes_and_consistency(photo):
    q = quantize(photo, 6)
    k = len(q.palette)
    assert q.palette.shape == (k, 3) and q.palette.dtype == np.float32
    assert q.palette_rgb.shape == (k, 3) and q.palette_rgb.dtype == np.uint8
    assert q.shares.shape == (k,) and q.shares.dtype == np.float32
    assert q.shares.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(q.shares) <= 0), "palette sorted by share, largest first"
    assert q.labels.shape == photo.shape[:2] and q.labels.dtype == np.int32
    np.testing.assert_array_equal(q.image, q.palette_rgb[q.labels])
    np.testing.assert_allclose(q.shares, np.bincount(q.labels.ravel(), minlength=k) / q.labels.size, atol=1e-6)


def test_deterministic_and_seed_matters(photo):
    a, b = quantize(photo, 8, seed=1), quantize(photo, 8, seed=1)
    np.testing.assert_array_equal(a.palette, b.palette)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_k1_gives_the_mean_colour(photo):
    q = quantize(photo, 1, space="rgb")
    assert len(q.palette) == 1
    np.testing.assert_allclose(q.palette[0], photo.reshape(-1, 3).mean(0), atol=1e-3)
    assert q.shares[0] == 1.0


def test_k_above_distinct_colours_returns_fewer_and_no_nan():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:5] = (200, 30, 30)
    image[5:, :5] = (10, 220, 40)
    q = quantize(image, 50)
    assert len(q.palette) == 3
    assert np.isfinite(q.palette).all()
    np.testing.assert_array_equal(q.image, image)


def test_single_colour_image():
    image = np.full((20, 30, 3), (12, 34, 56), np.uint8)
    q = quantize(image, 8)
    assert len(q.palette) == 1
    np.testing.assert_array_equal(q.palette_rgb[0], (12, 34, 56))
    assert rgb_mse(image, q.image) == 0.0
    assert mean_delta_e(image, q.image) == pytest.approx(0.0, abs=1e-4)


def test_more_colours_means_less_error(photo):
    errors = [rgb_mse(photo, quantize(photo, k).image) for k in (2, 4, 8, 16, 32)]
    assert errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 4), np.uint8)])
def test_rejects_arrays_that_are_not_decoded_images(bad):
    with pytest.raises(ValueError, match="read_image"):
        quantize(bad, 3)


@pytest.mark.parametrize("k", [0, -3, 1.5])
def test_rejects_bad_k(photo, k):
    with pytest.raises(ValueError, match="k must be"):
        quantize(photo, k)
