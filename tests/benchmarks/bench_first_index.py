"""A first index against a plain decoding loop over the same files (issue 13: at most 1.25x).

Makes N distinct 1024x768 JPEGs at run time from the Kodak images (random 4:3 crops resized, every other one
mirrored, quality 95; nothing is kept), then, interleaved and repeated, in this process, one core:

- ``plain``: read every file and decode it in full with OpenCV (``cv2.imdecode``, IMREAD_COLOR), nothing else;
- ``index``: a fresh ``Index.add(folder, workers=1)`` into a new database (the codebook's sample read, hashed and
  decoded once at the histograms' scale, its colours pooled from block means of that decode and the decodes kept
  for the histograms; then the other files read, hashed and decoded, every histogram made and written);
- ``codebook``: the codebook stage alone (``learn_collection_codebook``, keeping the decodes as a run does);
- the colour pool of the codebook per image, the way it is done (``pool_colours``, touching the occupied bins)
  and the way it was done (a bincount over all 2**18 bins), on 1/8-scale decodes: same pool, ms per image.

Wall time (medians, and each run against the plain loop of its round) and this process's CPU time, which a busy
machine disturbs least, are printed with the load average.

    python tests/benchmarks/bench_first_index.py [--images 600] [--runs 3] [--kodak ../shared/data/kodak]
"""

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from cbir import Index, Settings, read_image  # noqa: E402
from cbir.core.codebook import POOL_BITS, empty_pool, pool_colours  # noqa: E402
from cbir.core.colour import bin_index  # noqa: E402
from cbir.index.run import CODEBOOK_MIN_SIDE, learn_collection_codebook  # noqa: E402


def make_photos(kodak, folder, count, seed=0):
    """``count`` 1024x768 JPEGs from the Kodak PNGs: random 4:3 crops of 70-100% of the width, resized."""
    sources = sorted(glob.glob(os.path.join(kodak, "*.png")))
    if not sources:
        sys.exit(f"no Kodak PNGs in {kodak}")
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = cv2.imread(sources[i % len(sources)])
        if image.shape[0] > image.shape[1]:
            image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        height, width = image.shape[:2]
        crop_h = min(height, int(width * rng.uniform(0.7, 1.0) * 3 / 4))
        crop_w = crop_h * 4 // 3
        y, x = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
        photo = cv2.resize(image[y : y + crop_h, x : x + crop_w], (1024, 768), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(os.path.join(folder, f"photo{i:04d}.jpg"), photo[:, ::-1] if i % 2 else photo,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return sorted(glob.glob(os.path.join(folder, "*.jpg")))


def decode_all(files, flags=cv2.IMREAD_COLOR):
    """Read every file and decode it with OpenCV, nothing else (``IMREAD_COLOR``: the plain full-decode loop)."""
    for path in files:
        with open(path, "rb") as handle:
            cv2.imdecode(np.frombuffer(handle.read(), np.uint8), flags)


def dense_pool_colours(pool, image):
    """The pool update as it was: a bincount over every bin."""
    counts = np.bincount(bin_index(image, POOL_BITS).ravel(), minlength=len(pool))
    pool += np.rint(counts * (65536 / max(counts.sum(), 1))).astype(np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kodak", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/kodak"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "photos")
        os.mkdir(folder)
        files = make_photos(args.kodak, folder, args.images)
        size = sum(os.path.getsize(f) for f in files) / len(files)

        def plain():
            decode_all(files)

        def index():
            database = os.path.join(scratch, "photos.db")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(database + suffix):
                    os.remove(database + suffix)
            with Index.open(database, create=True) as opened:
                opened.add(folder, workers=1)

        def codebook():
            learn_collection_codebook(files, Settings())

        times = {"plain": [], "index": [], "codebook": []}
        cpu = {name: [] for name in times}
        for _ in range(args.runs):
            for name, run in (("plain", plain), ("index", index), ("codebook", codebook)):
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        small = [read_image(path, min_side=CODEBOOK_MIN_SIDE) for path in files[:200]]
        pools = {}
        for name, update in (("occupied bins", pool_colours), ("all bins (before)", dense_pool_colours)):
            pool = empty_pool()
            start = time.perf_counter()
            for image in small:
                update(pool, image)
            pools[name] = (pool, (time.perf_counter() - start) / len(small) * 1e3)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{len(files)} JPEGs 1024x768, {size / 1e3:.0f} kB each; medians of {args.runs} interleaved runs, one core")
    for name, seconds in median.items():
        # Each run against the plain loop of the same round: the machine's load drifts less within a round.
        paired = statistics.median(t / p for t, p in zip(times[name], times["plain"]))
        print(f"  {name:9s} {seconds:6.2f} s  {seconds / median['plain']:.2f}x plain (paired by round: {paired:.2f}x)"
              f"   runs {', '.join(f'{t:.2f}' for t in times[name])}")
    # CPU time of this process (one thread): what a busy machine disturbs least; it leaves out waiting for the disk.
    cpu_median = {name: statistics.median(values) for name, values in cpu.items()}
    print("  CPU time: " + ", ".join(f"{name} {seconds:.2f} s ({seconds / cpu_median['plain']:.2f}x)"
                                     for name, seconds in cpu_median.items()))
    same = np.array_equal(*(pool for pool, _ in pools.values()))
    print("  colour pool per image: " + ", ".join(f"{name} {ms:.2f} ms" for name, (_, ms) in pools.items())
          + f" (same pool: {same})")
    print(f"load average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
