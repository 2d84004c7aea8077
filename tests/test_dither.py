"""Floyd-Steinberg in wavefronts against a plain pixel loop, and the pieces around it."""

import numpy as np
import pytest

from cbir.core.dither import dither_strength, floyd_steinberg, perceptual_metric

PALETTE = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128],
                    [200, 150, 50], [20, 90, 160]], np.uint8)
METRIC = np.array([[1.5, 0, 0], [0.3, 2.0, 0], [0.1, -0.2, 1.2]], np.float32)


def naive_floyd_steinberg(image, palette, strength=1.0, metric=None, limit=None):
    """Textbook raster-order Floyd-Steinberg, one pixel at a time, in float64."""
    pixels = image.astype(np.float64)
    colours = palette.astype(np.float64)
    channels = pixels.shape[2]
    m = np.eye(3) if metric is None else np.asarray(metric, np.float64)
    if channels == 4:  # premultiplied
        pixels[..., :3] *= pixels[..., 3:] / 255
        colours[:, :3] *= colours[:, 3:] / 255
        m = np.block([[m, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]])
    height, width = pixels.shape[:2]
    gain = np.repeat(np.broadcast_to(np.asarray(strength, np.float64), (height, width))[..., None], channels, 2)
    if channels == 4:
        gain[image[..., 3] == 0] = 0
        gain[..., 3][image[..., 3] == 255] = 0
    error = np.zeros_like(pixels)
    labels = np.zeros((height, width), np.int32)
    for y in range(height):
        for x in range(width):
            value = np.clip(pixels[y, x] + gain[y, x] * error[y, x], 0, 255)
            if channels == 4:
                value[:3] = np.minimum(value[:3], value[3])
            best = int((((colours - value) @ m) ** 2).sum(1).argmin())
            labels[y, x] = best
            pushed = value - colours[best]
            if limit is not None:
                pushed = np.clip(pushed, -limit, limit)
            for dy, dx, weight in ((0, 1, 7), (1, -1, 3), (1, 0, 5), (1, 1, 1)):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    error[y + dy, x + dx] += pushed * weight / 16
    return labels


def reference(image, palette, **kwargs):
    """The pixel loop in the order the wavefront uses: along columns for an image taller than wide."""
    if image.shape[0] > image.shape[1]:
        strength = kwargs.pop("strength", 1.0)
        strength = np.asarray(strength).T if np.ndim(strength) else strength
        return naive_floyd_steinberg(image.transpose(1, 0, 2), palette, strength, **kwargs).T
    return naive_floyd_steinberg(image, palette, **kwargs)


@pytest.mark.parametrize("shape", [(23, 31), (31, 23), (1, 9), (9, 1), (1, 1), (2, 2)])
def test_equals_plain_floyd_steinberg(photo, shape):
    image = photo[:shape[0], :shape[1]]
    strength = np.random.default_rng(1).random(shape).astype(np.float32)
    ours = floyd_steinberg(image, PALETTE, strength=strength, metric=METRIC, error_limit=32.0)
    np.testing.assert_array_equal(ours, reference(image, PALETTE, strength=strength, metric=METRIC, limit=32.0))
    plain = floyd_steinberg(image, PALETTE)
    np.testing.assert_array_equal(plain, reference(image, PALETTE))


@pytest.mark.parametrize("shape", [(17, 25), (25, 17)])
def test_equals_plain_floyd_steinberg_with_alpha(photo, shape):
    rng = np.random.default_rng(2)
    image = np.concatenate([photo[:shape[0], :shape[1]], rng.integers(0, 256, shape + (1,), dtype=np.uint8)], 2)
    image[:3, :3, 3] = 0
    palette = np.column_stack([PALETTE, np.array([255, 255, 128, 255, 0, 255, 60, 200], np.uint8)])
    ours = floyd_steinberg(image, palette, metric=METRIC)
    np.testing.assert_array_equal(ours, reference(image, palette, metric=METRIC))


@pytest.mark.parametrize("shape", [(30, 150), (150, 30)])
def test_equals_plain_floyd_steinberg_over_many_wavefronts(shape):
    """Wider than the ring of error slots several times over (its wrap-around keeps the last three)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.clip(np.stack([x * 1.7, y * 1.7, (x + y)], -1) + rng.normal(0, 20, shape + (3,)), 0, 255)
    image = image.astype(np.uint8)
    strength = rng.random(shape).astype(np.float32)
    ours = floyd_steinberg(image, PALETTE, strength=strength, metric=METRIC, error_limit=32.0)
    np.testing.assert_array_equal(ours, reference(image, PALETTE, strength=strength, metric=METRIC, limit=32.0))


def test_grey_between_black_and_white_alternates():
    labels = floyd_steinberg(np.full((6, 8, 3), 128, np.uint8), np.array([[0, 0, 0], [255, 255, 255]], np.uint8))
    assert abs(labels.mean() - 128 / 255) < 0.05
    assert (labels[:, 1:] != labels[:, :-1]).mean() > 0.8


def test_zero_strength_is_nearest_colour(photo):
    labels = floyd_steinberg(photo, PALETTE, strength=0.0)
    nearest = ((photo[..., None, :].astype(float) - PALETTE) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(labels, nearest)


def test_strength_is_high_where_flat_and_zero_where_busy():
    labels = np.zeros((5, 6), np.int32)
    labels[:, 3:] = np.arange(15).reshape(5, 3)  # every pixel of the right half differs from its neighbours
    strength = dither_strength(labels)
    assert strength[2, 1] == pytest.approx(0.85) and strength[2, 4] == 0


def test_perceptual_metric_is_lower_triangular_and_weighs_more_than_rgb():
    metric = perceptual_metric(PALETTE, np.full(len(PALETTE), 1 / len(PALETTE)))
    assert metric.shape == (3, 3) and np.allclose(np.triu(metric, 1), 0)
    assert np.all(np.linalg.eigvalsh(metric @ metric.T) > 1)


@pytest.mark.parametrize("image, palette", [(np.zeros((2, 2), np.uint8), PALETTE),
                                            (np.zeros((2, 2, 3), np.uint8), PALETTE[:, :2]),
                                            (np.zeros((2, 2, 4), np.uint8), PALETTE)])
def test_rejects_mismatched_arrays(image, palette):
    with pytest.raises(ValueError):
        floyd_steinberg(image, palette)
