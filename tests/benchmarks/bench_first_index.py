"""A first index against a plain decoding loop over the same files (issue 13: at most 1.25x).

Makes N distinct 1024x768 JPEGs at run time from the Kodak images (random 4:3 crops resized, every other one
mirrored, quality 95; nothing is kept), then, interleaved and repeated, in this process, one core:

- ``plain``: read every file and decode it in full with OpenCV (``cv2.imdecode``, IMREAD_COLOR), nothing else;
- ``index``: a fresh ``Index.add(folder, workers=1)`` into a new database (the codebook's sample read, hashed and
  decoded once at the histograms' scale, its colours pooled from block means of that decode and the decodes kept
  for the histograms; then the other files read, hashed and decoded, every histogram made and written);
- ``codebook``: the codebook stage alone (``learn_collection_codebook``, keeping the decodes as a run does);
- the fixed parts, wall and CPU time: the codebook's k-means and its lookup table;
- the colour pool of the codebook per image, the way it is done (``pool_colours``, touching the occupied bins)
  and the way it was done (a bincount over all 2**18 bins), on the pictures it is made from (``pool_scale``: block
  means of the histograms' decode, 64x48 here): same pool, ms per image.

Wall time (medians, and each run against the plain loop of its round) and this process's CPU time, which a busy
machine disturbs least, are printed with the load average.

With ``--fresh``, ``plain`` and ``index`` are also timed each in a new process of their own (after the imports), as a
command would run them. There the plain loop pays for fresh memory at every full decode: glibc gives each 2.4 MB
decode new pages (its mmap threshold only ever rises to the size of a block freed, so a block of the same size is
mapped again), while in this warmed process the heap already holds them.

    python tests/benchmarks/bench_first_index.py [--images 600] [--runs 3] [--kodak ../shared/data/kodak] [--fresh]
"""

import argparse
import glob
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from cbir import Index, Settings, read_image  # noqa: E402
from cbir.core.codebook import POOL_BITS, empty_pool, learn_codebook, pool_colours  # noqa: E402
from cbir.core.colour import bin_index  # noqa: E402
from cbir.core.histogram import lookup_table  # noqa: E402
from cbir.index.run import learn_collection_codebook, pool_scale  # noqa: E402


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


def fresh_index(folder, database):
    """A first index of ``folder`` into a new ``database``, one process."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(database + suffix):
            os.remove(database + suffix)
    with Index.open(database, create=True) as opened:
        opened.add(folder, workers=1)


def timed_in_a_new_process(name, folder, database):
    """``(seconds, page faults)`` of one ``plain`` or ``index`` run in a new process (its imports not counted)."""
    out = subprocess.run([sys.executable, __file__, "--one", name, "--folder", folder, "--database", database],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def fixed_costs(pool, colors, repeats=5):
    """Median wall and CPU milliseconds of the two fixed parts of a first index: the codebook's k-means over
    ``pool`` and the lookup table of the codebook it gives (CPU above wall: BLAS threads at work or spinning)."""
    colours = learn_codebook(pool, colors)[0]
    costs = {}
    for name, run in (("k-means", lambda: learn_codebook(pool, colors)), ("lookup table", lambda: lookup_table(colours))):
        times = []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times.append((time.perf_counter() - start, time.process_time() - start_cpu))
        costs[name] = tuple(statistics.median(t[i] for t in times) * 1e3 for i in (0, 1))
    return costs


def dense_pool_colours(pool, image):
    """The pool update as it was: a bincount over every bin."""
    counts = np.bincount(bin_index(image, POOL_BITS).ravel(), minlength=len(pool))
    pool += np.rint(counts * (65536 / max(counts.sum(), 1))).astype(np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kodak", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/kodak"))
    parser.add_argument("--fresh", action="store_true", help="also time plain and index in new processes")
    parser.add_argument("--one", choices=["plain", "index"], help=argparse.SUPPRESS)  # one run, for --fresh
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.one:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        if args.one == "plain":
            decode_all(sorted(glob.glob(os.path.join(args.folder, "*.jpg"))))
        else:
            fresh_index(args.folder, args.database)
        print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "photos")
        os.mkdir(folder)
        files = make_photos(args.kodak, folder, args.images)
        size = sum(os.path.getsize(f) for f in files) / len(files)

        def plain():
            decode_all(files)

        database = os.path.join(scratch, "photos.db")

        def index():
            fresh_index(folder, database)

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
        small = [pool_scale(read_image(path, min_side=Settings().min_side)) for path in files[:200]]
        pools = {}
        for name, update in (("occupied bins", pool_colours), ("all bins (before)", dense_pool_colours)):
            pool = empty_pool()
            start = time.perf_counter()
            for image in small:
                update(pool, image)
            pools[name] = (pool, (time.perf_counter() - start) / len(small) * 1e3)
        fixed = fixed_costs(pools["occupied bins"][0], Settings().colors)
        fresh = {"plain": [], "index": []}
        for _ in range(args.runs if args.fresh else 0):
            for name in fresh:
                fresh[name].append(timed_in_a_new_process(name, folder, database))
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
    print("  fixed per first index: " + ", ".join(f"{name} {wall:.0f} ms (CPU {cpu:.0f} ms)"
                                                for name, (wall, cpu) in fixed.items()))
    print("  colour pool per image: " + ", ".join(f"{name} {ms:.2f} ms" for name, (_, ms) in pools.items())
          + f" (same pool: {same})")
    if args.fresh:
        seconds = {name: statistics.median(t for t, _ in runs) for name, runs in fresh.items()}
        paired = statistics.median(i[0] / p[0] for i, p in zip(fresh["index"], fresh["plain"]))
        print(f"  in new processes: plain {seconds['plain']:.2f} s ({statistics.median(f for _, f in fresh['plain'])} "
              f"page faults), index {seconds['index']:.2f} s ({statistics.median(f for _, f in fresh['index'])} page "
              f"faults), {seconds['index'] / seconds['plain']:.2f}x plain (paired by round: {paired:.2f}x)")
    print(f"load average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
