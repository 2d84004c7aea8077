"""Indexing speed against the physical floor (JPEG decode alone) and the slow ways, side by side in one run.

1. Per image, one core (cv2.setNumThreads(1)), three JPEG sizes: 256x256 (Wang), 1024x768 and 3000x2000 (Kodak
   upscaled and JPEG-encoded in a temporary folder). Interleaved per image: decode only (cv2.imdecode of the bytes
   in RAM at the reduction cbir picks), cbir's ``describe`` (read + sha256 + decode + histogram), its parts, and
   the plain numpy histogram it replaced.
2. Whole ``cbir index --workers N`` commands (N = 1, 2; each a new process, SQLite writes included, codebook
   already learned) over 5, 20 and 50 copies of Wang (symlinks).
3. Per-image cost against the seed recipe (cv2.kmeans palette per image) and a pyimagesearch-style HSV histogram.

    python tests/benchmarks/bench_index.py [--wang ../shared/data/wang1000] [--kodak ../shared/data/kodak]
                                           [--images 120] [--copies 5,20,50]
"""

import argparse
import glob
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from cbir.core.histogram import lookup_table, region_counts
from cbir.imageio import (
    _REDUCED_FLAGS,
    decode_image,
    header_size,
    read_bytes,
    reduction_for,
)
from cbir.index.run import describe, index_paths
from cbir.settings import Settings
from cbir.store import Store

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
med = statistics.median


def whole_run(db, folder, workers):
    """``cbir index FOLDER --workers N`` as a user runs it, a new process (interpreter start, imports, the worker
    server's start, the writes, the search cache of a large index): (wall seconds of the command, images added,
    seconds of its index run proper as it reports them: files to histograms in the database, no start-up, no
    cache)."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cbir", "index", folder, "--db", db, "--workers", str(workers),
                          "--json"], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()).stdout
    report = json.loads(out)
    return time.perf_counter() - started, report["added"], report["seconds"]


def make_large(kodak, folder, size):
    os.makedirs(folder, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(kodak, "*.png"))):
        image = cv2.imread(path)
        if image.shape[0] > image.shape[1]:
            image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        big = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(os.path.join(folder, os.path.basename(path)[:-4] + ".jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return sorted(glob.glob(os.path.join(folder, "*.jpg")))


def per_image(files, settings, lut, repeats):
    rows = []
    for path in files:
        data = open(path, "rb").read()
        flag = _REDUCED_FLAGS.get(reduction_for(header_size(data), settings.min_side), cv2.IMREAD_COLOR)
        image = decode_image(data, min_side=settings.min_side)
        steps = {
            "decode only": lambda: cv2.imdecode(np.frombuffer(data, np.uint8), flag),
            "cbir describe": lambda: describe(path, settings, lut, len(lut_colours)),
            "read": lambda: read_bytes(path),
            "sha256": lambda: hashlib.sha256(data).hexdigest(),
            "cbir decode_image": lambda: decode_image(data, min_side=settings.min_side),
            "histogram (OpenCV path)": lambda: region_counts(image, lut, len(lut_colours), method="opencv"),
            "histogram (numpy path)": lambda: region_counts(image, lut, len(lut_colours), method="numpy"),
        }
        times = {name: [] for name in steps}
        for _ in range(repeats):
            for name, run in steps.items():
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
        rows.append({name: med(v) for name, v in times.items()} | {"pixels": image.shape[0] * image.shape[1],
                                                                   "bytes": len(data)})
    return rows


lut_colours = None


def main():
    global lut_colours
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wang", default=os.path.join(SHARED, "wang1000"))
    parser.add_argument("--kodak", default=os.path.join(SHARED, "kodak"))
    parser.add_argument("--images", type=int, default=120, help="Wang images for the per-image table")
    parser.add_argument("--copies", default="5,20,50", help="Wang copies (symlinks) for the whole-run table")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} cores; cv2 {cv2.__version__}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}\n")
    settings = Settings()
    rng = np.random.default_rng(0)
    k = settings.colors  # the default codebook size (128): random CIELAB colours, as good as learned ones here
    lut_colours = np.column_stack([rng.uniform(10, 95, k), rng.uniform(-60, 60, k), rng.uniform(-60, 60, k)])
    lut = lookup_table(lut_colours.astype(np.float32), "lab")
    tmp = tempfile.mkdtemp(prefix="cbir-bench-index-")
    try:
        wang = sorted(glob.glob(os.path.join(args.wang, "*.jpg")), key=lambda p: int(os.path.basename(p)[:-4]))
        sets = [("256x256 (Wang)", wang[: args.images]),
                ("1024x768 (Kodak upscaled)", make_large(args.kodak, os.path.join(tmp, "m"), (1024, 768))),
                ("3000x2000 (Kodak upscaled)", make_large(args.kodak, os.path.join(tmp, "l"), (3000, 2000)))]
        print("## Per image, one core (median over images of the median of repeats)\n")
        print("| images | n | file | decoded px | decode only | cbir describe | cbir / decode-only throughput "
              "| read | sha256 | decode_image | histogram OpenCV | histogram numpy (before) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for label, files in sets:
            rows = per_image(files, settings, lut, args.repeats)
            m = {k: med(r[k] for r in rows) for k in rows[0]}
            ratio = med(r["decode only"] / r["cbir describe"] for r in rows)
            ms = lambda k: f"{m[k] * 1e3:.3f} ms"  # noqa: E731
            print(f"| {label} | {len(rows)} | {m['bytes'] / 1e3:.0f} kB | {m['pixels']:,.0f} | {ms('decode only')} "
                  f"| {ms('cbir describe')} | {ratio:.0%} | {ms('read')} | {ms('sha256')} | {ms('cbir decode_image')} "
                  f"| {ms('histogram (OpenCV path)')} | {ms('histogram (numpy path)')} |", flush=True)

        print("\n## Whole `cbir index` commands over Wang (codebook learned beforehand; SQLite writes included)\n")
        print("Each a new process, timed from outside: interpreter start, imports and the worker server's start "
              "are included.\n")
        base = os.path.join(tmp, "base.db")
        with Store.open(base, create=True) as store:
            index_paths(store, [wang[0]], {"sample": 1000})
        print("| workers | images | command (wall) | its index run (reported) | the rest: start-up, search cache "
              "| per image (index run) | **speed-up, command** | speed-up, index run | load average at end |")
        print("|---|---|---|---|---|---|---|---|---|")
        for copies in [int(c) for c in args.copies.split(",")]:
            folder = os.path.join(tmp, f"wang{copies}")
            for copy in range(copies):
                os.makedirs(os.path.join(folder, str(copy)))
                for path in wang:
                    os.symlink(path, os.path.join(folder, str(copy), os.path.basename(path)))
            walls, runs = {}, {}
            for workers in (1, 2, 1, 2):
                db = os.path.join(tmp, f"run{workers}.db")
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(db + suffix):
                        os.unlink(db + suffix)
                shutil.copy(base, db)
                wall, n, run = whole_run(db, folder, workers)
                walls.setdefault(workers, []).append(wall)
                runs.setdefault(workers, []).append(run)
                # against the best 1-worker run of the same size so far
                ups = (f"{min(walls[1]) / wall:.2f}x", f"{min(runs[1]) / run:.2f}x") if workers == 2 else ("1", "1")
                print(f"| {workers} | {n} | {wall:.2f} s | {run:.2f} s | {wall - run:.2f} s | {run / n * 1e3:.3f} ms "
                      f"| {ups[0]} | {ups[1]} | {os.getloadavg()[0]:.2f} |", flush=True)

        print("\n## Per-image index cost against the seed recipe and a peer (Wang, one core)\n")
        sample = wang[:: max(1, len(wang) // 20)][:20]
        recipe, hsv, ours = [], [], []
        for path in sample:
            image = cv2.imread(path)
            t = time.perf_counter()
            pixels = image.reshape(-1, 3).astype(np.float32)
            cv2.kmeans(pixels, 8, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0), 10,
                       cv2.KMEANS_RANDOM_CENTERS)
            recipe.append(time.perf_counter() - t)
            t = time.perf_counter()
            h = cv2.calcHist([cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2HSV)], [0, 1, 2], None, [8, 12, 3],
                             [0, 180, 0, 256, 0, 256])
            cv2.normalize(h, h).flatten()
            hsv.append(time.perf_counter() - t)
            t = time.perf_counter()
            describe(path, settings, lut, len(lut_colours))
            ours.append(time.perf_counter() - t)
        print(f"seed recipe (cv2.kmeans k=8, attempts 10, per image): {med(recipe) * 1e3:.1f} ms; "
              f"pyimagesearch-style HSV 8x12x3 calcHist: {med(hsv) * 1e3:.2f} ms; "
              f"cbir describe: {med(ours) * 1e3:.3f} ms ({len(sample)} Wang images, medians)")
        print(f"\nload average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
