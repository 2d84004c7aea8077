"""Colour-only peers re-implemented and measured with cbir's protocol and metrics (cbir.core.metrics.ranking_metrics):
every labelled image queries all the others, MAP over the full ranking, P@10, P@20.

- pochih/CBIR colour: RGB, 12 uniform bins per channel, 3x3 regions, all normalised by the total count, L1.
- pyimagesearch: HSV (OpenCV ranges) 8x12x3 bins over 5 regions (4 corners outside a centred ellipse with axes
  3/4 of the image, and the ellipse), each histogram L2-normalised (cv2.normalize), chi-squared.
- plain RGB 4x4x4 global histogram of shares, L1.

Images are decoded at full size with cv2. These are re-implementations from the peers' published recipes; the
figures should come close to the ones reported for the originals, not necessarily equal them.

    python tests/benchmarks/bench_peers.py [--data ../shared/data/wang1000]
"""

import argparse
import os

import cv2
import numpy as np

from cbir.core.metrics import ranking_metrics
from cbir.experiments.evaluate import read_labels
from cbir.imageio import read_image

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "wang1000"))


def rgb_histogram(image, bins, grid=1):
    """Uniform RGB bins per channel over grid x grid regions, normalised by the total count."""
    index = (image.astype(np.int64) * bins // 256) @ np.array([bins * bins, bins, 1])
    height, width = index.shape
    rows = np.round(np.linspace(0, height, grid + 1)).astype(int)
    cols = np.round(np.linspace(0, width, grid + 1)).astype(int)
    blocks = [np.bincount(index[rows[i]:rows[i + 1], cols[j]:cols[j + 1]].ravel(), minlength=bins ** 3)
              for i in range(grid) for j in range(grid)]
    hist = np.concatenate(blocks).astype(np.float64)
    return hist / hist.sum()


def hsv_regions_histogram(image, bins=(8, 12, 3)):
    """pyimagesearch's descriptor: HSV histograms of 4 corner regions minus a centre ellipse, and the ellipse."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image[:, :, ::-1]), cv2.COLOR_BGR2HSV)
    height, width = hsv.shape[:2]
    cx, cy = int(width * 0.5), int(height * 0.5)
    segments = [(0, cx, 0, cy), (cx, width, 0, cy), (cx, width, cy, height), (0, cx, cy, height)]
    axes = (int(width * 0.75) // 2, int(height * 0.75) // 2)
    ellipse = np.zeros((height, width), np.uint8)
    cv2.ellipse(ellipse, (cx, cy), axes, 0, 0, 360, 255, -1)
    features = []
    for x0, x1, y0, y1 in segments:
        corner = np.zeros((height, width), np.uint8)
        cv2.rectangle(corner, (x0, y0), (x1, y1), 255, -1)
        features.append(_hsv_hist(hsv, cv2.subtract(corner, ellipse), bins))
    features.append(_hsv_hist(hsv, ellipse, bins))
    return np.concatenate(features)


def _hsv_hist(hsv, mask, bins):
    hist = cv2.calcHist([hsv], [0, 1, 2], mask, list(bins), [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten().astype(np.float64)


def l1(x):
    return np.stack([np.abs(x - q).sum(1) for q in x])


def chi2(x, eps=1e-10):
    return np.stack([0.5 * ((x - q) ** 2 / (x + q + eps)).sum(1) for q in x])


def measure(distances, labels):
    """Full rankings (self excluded, ties by row) from an (N, N) distance matrix -> MAP, P@10, P@20."""
    n = len(distances)
    rankings = np.empty((n, n - 1), np.int64)
    for q in range(n):
        order = np.lexsort((np.arange(n), distances[q]))
        rankings[q] = order[order != q]
    measured = ranking_metrics(rankings, labels, np.arange(n))
    return measured["ap"].mean(), measured["p@10"].mean(), measured["p@20"].mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder with the images and labels.csv")
    parser.add_argument("--labels", default=None, help="labels file (default DATA/labels.csv)")
    args = parser.parse_args()
    collection = read_labels(args.data, args.labels or os.path.join(args.data, "labels.csv"))
    images = [read_image(path) for path in collection.paths]
    labels = np.array(collection.labels)
    peers = [
        ("pochih/CBIR colour: RGB 12^3 x 3x3 regions, L1", lambda: l1(np.array([rgb_histogram(i, 12, 3)
                                                                                for i in images]))),
        ("pyimagesearch: HSV 8x12x3 x 5 regions, chi-squared",
         lambda: chi2(np.array([hsv_regions_histogram(i) for i in images]))),
        ("plain RGB 4x4x4, L1", lambda: l1(np.array([rgb_histogram(i, 4) for i in images]))),
    ]
    print("| peer (re-implemented) | MAP | P@10 | P@20 |\n|---|---|---|---|")
    for name, distances in peers:
        print("| {} | {:.4f} | {:.4f} | {:.4f} |".format(name, *measure(distances(), labels)), flush=True)


if __name__ == "__main__":
    main()
