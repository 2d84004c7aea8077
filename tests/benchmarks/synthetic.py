"""Synthetic default-layout histograms made from real photos, for collections too large to decode here.

Ten million photos cannot be decoded on this machine, and random histograms would be too easy and unlike photos
(no near-duplicates, no shared colour schemes). So each synthetic photo is made from the histograms of real ones,
Wang 1000 and the 24 Kodak images (``../shared/data``), by what happens to photos:

- the real photos are decoded as cbir indexes them (``min_side`` 384), a codebook of 128 colours is learned from
  them (cbir's own k-means, seed 0), and each photo's pixels are counted per codebook colour on a 24 x 24 grid of
  cells (an integral image, so any rectangle of cells is counted in four look-ups);
- **crop**: a rectangle of 30-100% of the photo's area, its aspect ratio changed by up to x1.35; the 3x3 regions
  of the layout are laid over the crop (so a full-frame crop of a Wang photo gives its real histogram exactly);
- **mixture**: 30% are a splice of two photos, the part right of (or below) a random split, 25-75% of the way,
  taken from a crop of a second photo;
- **flips**: left-right half the time, upside down 5%, a quarter turn 10% (each a permutation of the 3x3 regions);
- **colour jitter**: 60% get one of 256 random photometric changes (exposure gain and offset on L*, saturation
  gain and a white-balance shift on a*, b*, of random strength): the pooled pixel colours of the real photos are
  moved by it and assigned to their nearest codebook colour again, which gives, per change, the share of each
  codebook colour's pixels that become each other colour; counts are moved accordingly and rounded to whole
  pixels.

The global block is the sum of the nine regions, as in cbir. A synthetic photo uses about 540 of its 1,280 shares
(real ones: 485). Everything is deterministic given the seed.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from cbir.core.codebook import POOL_BITS, empty_pool, learn_codebook, pool_colours
from cbir.core.colour import bin_centres, bin_index, to_space
from cbir.core.histogram import LUT_BITS, lookup_table
from cbir.core.kmeans import nearest_centre
from cbir.imageio import read_image

GRID = 24
REGIONS = 9
JITTERS = 256
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")

# where the old region r of a crop goes after each move (new slot of region r)
_MOVES = {
    "hflip": np.argsort([2, 1, 0, 5, 4, 3, 8, 7, 6]),
    "vflip": np.argsort([6, 7, 8, 3, 4, 5, 0, 1, 2]),
    "turn": np.argsort([6, 3, 0, 7, 4, 1, 8, 5, 2]),
}


class Bases:
    """The real material: codebook, per-photo cell counts, colour-jitter transitions."""

    def __init__(self, shared: str = SHARED, colors: int = 128, min_side: int = 384) -> None:
        paths = sorted(glob.glob(os.path.join(shared, "wang1000", "*.jpg")))
        paths += sorted(glob.glob(os.path.join(shared, "kodak", "*.png")))
        if not paths:
            raise FileNotFoundError(f"no Wang or Kodak images under {shared}")
        images = [read_image(p, min_side=min_side) for p in paths]
        pool = empty_pool()
        for image in images:
            pool_colours(pool, image)
        self.codebook, self.rgb, self.shares = learn_codebook(pool, colors, space="lab", seed=0)
        self.lut = lookup_table(self.codebook, "lab")
        k = self.k = len(self.codebook)
        integrals = np.zeros((len(images), GRID + 1, GRID + 1, k), np.int32)
        for n, image in enumerate(images):
            h, w = image.shape[:2]
            labels = self.lut[bin_index(image, LUT_BITS)]
            rows = np.minimum(((np.arange(h) + 0.5) / h * GRID).astype(int), GRID - 1)
            cols = np.minimum(((np.arange(w) + 0.5) / w * GRID).astype(int), GRID - 1)
            cells = (rows[:, None] * GRID + cols[None, :]) * k + labels
            counts = np.bincount(cells.ravel(), minlength=GRID * GRID * k).reshape(GRID, GRID, k)
            integrals[n, 1:, 1:] = counts.cumsum(0).cumsum(1)
        self.photos = len(images)
        self.cells = integrals.reshape(-1, k)
        self.bank = self._jitter_bank(pool)

    def _jitter_bank(self, pool: np.ndarray) -> np.ndarray:
        occupied = np.flatnonzero(pool)
        weights = pool[occupied].astype(np.float64)
        lab = to_space(bin_centres(POOL_BITS)[occupied], "lab").astype(np.float64)
        label = nearest_centre(lab.astype(np.float32), self.codebook)
        rng = np.random.default_rng(12345)
        bank = np.zeros((JITTERS, self.k, self.k), np.float32)
        for j in range(JITTERS):
            s = rng.uniform(0.2, 1)  # from a slight re-edit to another exposure and white balance
            gain, offset = rng.normal(1, 0.07 * s), rng.normal(0, 4 * s)
            sat, da, db = rng.normal(1, 0.1 * s), rng.normal(0, 3 * s), rng.normal(0, 3 * s)
            moved = np.column_stack([np.clip(50 + gain * (lab[:, 0] - 50) + offset, 0, 100),
                                     sat * lab[:, 1] + da, sat * lab[:, 2] + db])
            np.add.at(bank[j], (label, nearest_centre(moved.astype(np.float32), self.codebook)), weights)
            bank[j] /= np.maximum(bank[j].sum(1, keepdims=True), 1e-12)
        return bank

    def _rect(self, photo, r0, r1, c0, c1):
        g = GRID + 1
        base = photo * g * g
        cells = self.cells
        return (cells[base + r1 * g + c1] - cells[base + r0 * g + c1] - cells[base + r1 * g + c0]
                + cells[base + r0 * g + c0])

    def region_counts(self, n: int, seed) -> np.ndarray:
        """Pixel counts of the 3x3 regions of ``n`` synthetic photos: ``(n, 9, K) float32`` (whole pixels)."""
        rng = np.random.default_rng(seed)
        a, b = rng.integers(0, self.photos, n), rng.integers(0, self.photos, n)
        area, aspect = rng.uniform(0.3, 1.0, n), np.exp(rng.uniform(-0.3, 0.3, n))
        h = np.clip(np.rint(GRID * np.sqrt(area * aspect)), 6, GRID).astype(int)
        w = np.clip(np.rint(GRID * np.sqrt(area / aspect)), 6, GRID).astype(int)
        ra, ca = rng.integers(0, GRID - h + 1), rng.integers(0, GRID - w + 1)
        rb, cb = rng.integers(0, GRID - h + 1), rng.integers(0, GRID - w + 1)
        splice, vertical, fraction = rng.random(n) < 0.3, rng.random(n) < 0.5, rng.uniform(0.25, 0.75, n)
        split_c = np.where(splice & vertical, np.rint(w * fraction), w).astype(int)  # columns >= it: from b
        split_r = np.where(splice & ~vertical, np.rint(h * fraction), h).astype(int)  # rows >= it: from b
        slot = np.tile(np.arange(REGIONS), (n, 1))
        for move, p in (("hflip", 0.5), ("vflip", 0.05), ("turn", 0.1)):
            chosen = rng.random(n) < p
            slot[chosen] = _MOVES[move][slot[chosen]]
        jitter = np.where(rng.random(n) < 0.6, rng.integers(0, JITTERS, n), -1)
        order = np.argsort(jitter, kind="stable")  # grouped by jitter: one matrix product per group
        a, b, h, w, ra, ca, rb, cb, splice, vertical, split_c, split_r, slot, jitter = (
            x[order] for x in (a, b, h, w, ra, ca, rb, cb, splice, vertical, split_c, split_r, slot, jitter))
        out = np.zeros((n, REGIONS, self.k), np.float32)
        every = np.arange(n)
        for i in range(3):
            for j in range(3):
                r0, r1, c0, c1 = (i * h) // 3, ((i + 1) * h) // 3, (j * w) // 3, ((j + 1) * w) // 3
                ar1 = np.maximum(np.minimum(r1, split_r), r0)
                ac1 = np.maximum(np.minimum(c1, split_c), c0)
                part = self._rect(a, ra + r0, ra + ar1, ca + c0, ca + ac1)
                br0 = np.where(vertical, r0, ar1)
                bc0 = np.where(vertical, ac1, c0)
                from_b = splice & (br0 < r1) & (bc0 < c1)
                br0, bc0 = np.where(from_b, br0, r1), np.where(from_b, bc0, c1)
                part += self._rect(b, rb + br0, rb + r1, cb + bc0, cb + c1)
                out[every, slot[:, i * 3 + j]] = part
        bounds = np.searchsorted(jitter, np.arange(-1, JITTERS + 1))
        for j in range(JITTERS):
            lo, hi = bounds[j + 1], bounds[j + 2]
            if hi > lo:
                out[lo:hi] = (out[lo:hi].reshape(-1, self.k) @ self.bank[j]).reshape(hi - lo, REGIONS, self.k)
        return np.rint(out[np.argsort(order)])

    def histograms(self, n: int, seed) -> np.ndarray:
        """``n`` synthetic photos' global+3x3 histograms: ``(n, 10 * K) float32`` shares, global block first."""
        regions = self.region_counts(n, seed).astype(np.float64)
        blocks = np.concatenate([regions.sum(1, keepdims=True), regions], axis=1)
        shares = blocks / np.maximum(blocks.sum(2, keepdims=True), 1)
        return shares.reshape(n, -1).astype(np.float32)
