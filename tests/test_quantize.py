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


@pytest.mark.parametrize("space", ["rgblab", "lab", "rgb"])
@pytest.mark.parametrize("k", [2, 5, 9, 80])
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


@pytest.mark.parametrize("space", ["rgblab", "lab", "rgb"])
@pytest.mark.parametrize("k", [7, 100])
def test_every_pixel_gets_its_nearest_palette_colour(photo, space, k):
    q = quantize(photo, k, space=space)
    pixels = to_space(photo.reshape(-1, 3), space).astype(np.float64)
    d2 = ((pixels[:, None, :] - q.palette[None].astype(np.float64)) ** 2).sum(-1)
    chosen = d2[np.arange(len(d2)), q.labels.ravel()]
    np.testing.assert_allclose(chosen, d2.min(1), rtol=1e-4, atol=1e-3)


def test_result_shapes_dtypes_and_consistency(photo):
    q = quantize(photo, 6)
    k = len(q.palette)
    assert q.palette.shape == (k, 6) and q.palette.dtype == np.float32  # rgblab: RGB and CIELAB
    np.testing.assert_array_equal(q.palette_rgb, np.clip(np.rint(q.palette[:, :3]), 0, 255))
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
                                 np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8)])
def test_rejects_arrays_that_are_not_decoded_images(bad):
    with pytest.raises(ValueError, match="read_image"):
        quantize(bad, 3)


@pytest.mark.parametrize("k", [0, -3, 1.5])
def test_rejects_bad_k(photo, k):
    with pytest.raises(ValueError, match="k must be"):
        quantize(photo, k)


def test_rgblab_keeps_both_errors_between_rgb_and_lab(photo):
    """The joint space trades: its RGB error is below lab's, its mean ΔE below rgb's."""
    errors = {space: quantize(photo, 12, space=space).image for space in ("rgblab", "lab", "rgb")}
    assert rgb_mse(photo, errors["rgblab"]) < rgb_mse(photo, errors["lab"])
    assert mean_delta_e(photo, errors["rgblab"]) < mean_delta_e(photo, errors["rgb"])


def rgba_photo(photo):
    """The photo with an alpha channel: transparent left quarter, a soft ramp, opaque right half."""
    height, width = photo.shape[:2]
    ramp = np.clip((np.arange(width) - width / 4) * 255 / (width / 4), 0, 255).astype(np.uint8)
    alpha = np.broadcast_to(ramp, (height, width))[..., None]
    return np.concatenate([photo, alpha], axis=2)


@pytest.mark.parametrize("dither", ["none", "floyd-steinberg"])
def test_alpha_is_kept_transparent_and_opaque_exactly(photo, dither):
    image = rgba_photo(photo)
    q = quantize(image, 16, dither=dither)
    assert q.image.shape == image.shape and q.palette_alpha.dtype == np.uint8
    assert q.palette_colours.shape == (len(q.palette_rgb), 4)
    np.testing.assert_array_equal(q.image, q.palette_colours[q.labels])
    alpha = image[..., 3]
    assert (q.image[..., 3][alpha == 0] == 0).all(), "transparent pixels stay transparent"
    assert (q.image[..., 3][alpha == 255] == 255).mean() > 0.99, "opaque pixels stay opaque"
    assert 0 < len(set(q.palette_alpha.tolist()) - {0, 255}), "the ramp keeps translucent entries"
    # colour error over white is close to that of the same image without alpha
    from cbir.core.quantize import over_white
    assert rgb_mse(over_white(image), over_white(q.image)) < 2 * rgb_mse(photo, quantize(photo, 16).image) + 20


def test_opaque_alpha_channel_is_dropped(photo):
    image = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], axis=2)
    q = quantize(image, 8)
    assert q.palette_alpha is None and q.image.shape == photo.shape
    np.testing.assert_array_equal(q.image, quantize(photo, 8).image)


def test_floyd_steinberg_uses_the_same_palette_and_lowers_the_blurred_error(photo):
    import cv2

    plain = quantize(photo, 6)
    dithered = quantize(photo, 6, dither="floyd-steinberg")
    np.testing.assert_array_equal(plain.palette_rgb, dithered.palette_rgb)
    np.testing.assert_array_equal(dithered.image, dithered.palette_rgb[dithered.labels])
    assert dithered.dither == "floyd-steinberg" and dithered.shares.sum() == pytest.approx(1, abs=1e-6)

    def blurred_error(image):  # what dithering is for: the local average colour, as an eye sees it
        blur = lambda a: cv2.GaussianBlur(a.astype(np.float32), (0, 0), 1.5)
        return float(np.mean((blur(photo) - blur(image)) ** 2))

    assert blurred_error(dithered.image) < blurred_error(plain.image)


def test_rejects_unknown_dither_and_space(photo):
    with pytest.raises(ValueError, match="dither"):
        quantize(photo, 4, dither="ordered")
    with pytest.raises(ValueError, match="colour space"):
        quantize(photo, 4, space="hsv")
