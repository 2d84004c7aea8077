"""How much the two shortcuts of indexing change the histograms and the rankings.

1. Lookup table: pixels go to their nearest codebook colour through a table over colour bins. Compared with exact
   nearest-colour assignment (every pixel measured in CIELAB): share of pixels that agree, L1 distance between the
   two histograms, for 5-, 6- (default) and 7-bit tables.
2. Reduced JPEG decode: large JPEGs are decoded at 1/2, 1/4 or 1/8 scale while the short side keeps ``min_side``
   pixels. Compared with full decode on large JPEGs made from the Kodak images (upscaled to about 3000x2000): L1
   between histograms, and how much the all-against-all rankings move (top-1 kept, overlap of the top 5).

    python tests/benchmarks/measure_histograms.py [--kodak ../shared/data/kodak] [--colors 64]
"""

import argparse
import os
import statistics
import time

import cv2
import numpy as np

from cbir.core.backends import QuadraticFormSearch
from cbir.core.codebook import empty_pool, learn_codebook, pool_colours
from cbir.core.colour import bin_index, to_space
from cbir.core.histogram import histogram, lookup_table
from cbir.core.kmeans import nearest_centre
from cbir.core.qfd import similarity_matrix
from cbir.imageio import decode_image, encode_image, read_image
from cbir.settings import Settings

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_KODAK = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "kodak"))


def rankings(vectors, codebook, settings):
    a = similarity_matrix(codebook, settings.kernel, settings.sigma)
    search = QuadraticFormSearch.build(np.array(vectors), a, power=settings.power)
    return search.search(np.array(vectors), 0)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=DEFAULT_KODAK)
    parser.add_argument("--codebook-size", type=int, default=Settings().colors)
    args = parser.parse_args()
    settings = Settings(colors=args.colors, layout="global")
    files = sorted(os.path.join(args.kodak, f) for f in os.listdir(args.kodak) if f.endswith(".png"))
    images = [read_image(f) for f in files]
    pool = empty_pool()
    for image in images:
        pool_colours(pool, image)
    codebook = learn_codebook(pool, args.colors)[0]

    print(f"## Lookup table vs exact assignment ({len(images)} Kodak images, {len(codebook)}-colour CIELAB codebook)\n")
    print("| table | entries | pixels agreeing (median, min) | histogram L1 to exact (median, max) | build |")
    print("|---|---|---|---|---|")
    for bits in (5, 6, 7):
        start = time.perf_counter()
        lut = lookup_table(codebook, "lab", bits)
        build = time.perf_counter() - start
        agree, l1 = [], []
        for image in images:
            pixels = image.reshape(-1, 3)
            exact = nearest_centre(to_space(pixels, "lab"), codebook)
            fast = lut[bin_index(pixels, bits)]
            agree.append(float((exact == fast).mean()))
            h_exact = np.bincount(exact, minlength=len(codebook)) / len(exact)
            h_fast = np.bincount(fast, minlength=len(codebook)) / len(fast)
            l1.append(float(np.abs(h_exact - h_fast).sum()))
        print(f"| {bits} bits | {1 << 3 * bits:,} | {statistics.median(agree):.3f}, {min(agree):.3f} "
              f"| {statistics.median(l1):.4f}, {max(l1):.4f} | {build * 1e3:.0f} ms |")

    lut = lookup_table(codebook, "lab")
    large = []
    for image in images:
        big = cv2.resize(image, (image.shape[1] * 4, image.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        large.append(encode_image(big, ".jpg"))
    print(f"\n## Reduced JPEG decode ({len(large)} Kodak images upscaled to "
          f"{images[0].shape[1] * 4}x{images[0].shape[0] * 4} JPEG)\n")
    full = [histogram(decode_image(d), lut, len(codebook)) for d in large]
    base = rankings(full, codebook, settings)
    print("| min_side | decoded at | decode ms (median) | histogram L1 to full (median, max) | top-1 kept | top-5 overlap |")
    print("|---|---|---|---|---|---|")
    for min_side in (0, 1024, 512, 384, 256):
        times, hists = [], []
        for d in large:
            start = time.perf_counter()
            image = decode_image(d, min_side=min_side or None)
            times.append(time.perf_counter() - start)
            hists.append(histogram(image, lut, len(codebook)))
        l1 = [float(np.abs(a - b).sum()) for a, b in zip(hists, full)]
        ranked = rankings(hists, codebook, settings)
        # rank 0 is the query itself; compare the next results
        top1 = np.mean([r[1] == b[1] for r, b in zip(ranked, base)])
        top5 = np.mean([len(set(r[1:6]) & set(b[1:6])) / 5 for r, b in zip(ranked, base)])
        print(f"| {min_side or 'full'} | {image.shape[1]}x{image.shape[0]} | {statistics.median(times) * 1e3:.1f} "
              f"| {statistics.median(l1):.4f}, {max(l1):.4f} | {top1:.2f} | {top5:.2f} |")


if __name__ == "__main__":
    main()
