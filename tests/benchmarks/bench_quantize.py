"""cbir's quantization core against the classic cv2.kmeans colour-quantization recipe, in one process.

Recipe: cv2.kmeans over all pixels as float32, criteria (EPS + MAX_ITER, 20, 1.0), attempts 10,
KMEANS_RANDOM_CENTERS (it clusters in RGB). cbir runs in RGB (like for like, same error measure) and in its
default CIELAB. Prints a markdown report: per-k medians of time and error, speed-up ratios, and the share of
(image, k) pairs where cbir's RGB MSE is no worse than the recipe's.

    python tests/benchmarks/bench_quantize.py [--data ../shared/data/kodak] [--ks 5,8,25,35,45] [--limit N] [--budget B]
"""

import argparse
import glob
import importlib
import os
import statistics
import time

import cv2
import numpy as np

from cbir.core.quantize import mean_delta_e, quantize, rgb_mse
from cbir.imageio import read_image

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "kodak"))


def recipe(image, k):
    """The classic recipe, in RGB; returns the posterized image."""
    pixels = image.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    _, labels, centres = cv2.kmeans(pixels, k, None, criteria, 10, cv2.KMEANS_RANDOM_CENTERS)
    return np.uint8(centres)[labels.ravel()].reshape(image.shape)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--ks", default="5,8,25,35,45")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--budget", type=int, default=0,
                        help="override cbir.core.quantize.RESTART_BUDGET (k-means++ restarts = clip(budget / k, 1, 10))")
    args = parser.parse_args()
    if args.budget:
        importlib.import_module("cbir.core.quantize").RESTART_BUDGET = args.budget
    ks = [int(k) for k in args.ks.split(",")]
    files = sorted(glob.glob(os.path.join(args.data, "*.png")))[: args.limit or None]
    if not files:
        raise SystemExit(f"no PNG images in {args.data}")
    cv2.setRNGSeed(0)
    quantize(read_image(files[0]), 2)  # warm-up: one-off tables (bin geometry) are built per process
    rows = []
    for path in files:
        image = read_image(path)
        for k in ks:
            t_recipe, out_recipe = timed(recipe, image, k)
            t_rgb, q_rgb = timed(quantize, image, k, space="rgb")
            t_lab, q_lab = timed(quantize, image, k, space="lab")
            rows.append(dict(
                image=os.path.basename(path), k=k, t_recipe=t_recipe, t_rgb=t_rgb, t_lab=t_lab,
                mse_recipe=rgb_mse(image, out_recipe), mse_rgb=rgb_mse(image, q_rgb.image),
                mse_lab=rgb_mse(image, q_lab.image), de_recipe=mean_delta_e(image, out_recipe),
                de_lab=mean_delta_e(image, q_lab.image),
            ))
            print(f"# {rows[-1]['image']} k={k} recipe {t_recipe:.3f}s cbir-rgb {t_rgb * 1e3:.1f}ms "
                  f"cbir-lab {t_lab * 1e3:.1f}ms", flush=True)

    med = statistics.median
    print(f"\n{len(files)} images ({image.shape[1]}x{image.shape[0]} or rotated), {len(rows)} (image, k) pairs; "
          f"cv2 {cv2.__version__}, numpy {np.__version__}, {os.cpu_count()} cores\n")
    print("| k | recipe time | cbir rgb time | speed-up | cbir lab time | speed-up | recipe RGB MSE | cbir rgb MSE "
          "| cbir lab MSE | recipe ΔE | cbir lab ΔE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k in ks:
        r = [row for row in rows if row["k"] == k]
        print(f"| {k} | {med(x['t_recipe'] for x in r):.3f} s | {med(x['t_rgb'] for x in r) * 1e3:.1f} ms "
              f"| {med(x['t_recipe'] / x['t_rgb'] for x in r):.0f}x | {med(x['t_lab'] for x in r) * 1e3:.1f} ms "
              f"| {med(x['t_recipe'] / x['t_lab'] for x in r):.0f}x | {med(x['mse_recipe'] for x in r):.1f} "
              f"| {med(x['mse_rgb'] for x in r):.1f} | {med(x['mse_lab'] for x in r):.1f} "
              f"| {med(x['de_recipe'] for x in r):.2f} | {med(x['de_lab'] for x in r):.2f} |")
    speedups = [x["t_recipe"] / x["t_rgb"] for x in rows]
    no_worse = sum(x["mse_rgb"] <= x["mse_recipe"] for x in rows)
    print(f"\nAll pairs, cbir rgb: median speed-up {med(speedups):.0f}x (min {min(speedups):.0f}x, "
          f"max {max(speedups):.0f}x); RGB MSE no worse than the recipe in {no_worse}/{len(rows)} pairs "
          f"({100 * no_worse / len(rows):.0f}%); median MSE ratio cbir/recipe "
          f"{med(x['mse_rgb'] / x['mse_recipe'] for x in rows):.3f}.")
    lab_speedups = [x["t_recipe"] / x["t_lab"] for x in rows]
    lab_better_de = sum(x["de_lab"] <= x["de_recipe"] for x in rows)
    print(f"All pairs, cbir lab (default): median speed-up {med(lab_speedups):.0f}x; mean ΔE no worse than the "
          f"recipe in {lab_better_de}/{len(rows)} pairs.")


if __name__ == "__main__":
    main()
