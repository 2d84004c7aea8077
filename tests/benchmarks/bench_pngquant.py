"""cbir's palette images against pngquant (Debian's, a benchmark peer only), in one run, interleaved per image.

For each of the Kodak images and k in 16, 64, 256: pngquant --nofs against cbir without dithering, and pngquant's
default (Floyd-Steinberg) against cbir --dither floyd-steinberg. Each tool reads the PNG and writes an indexed PNG;
pngquant runs as a process per image, twice (its default OpenMP threads, and OMP_NUM_THREADS=1); cbir runs in this
process (read_image, quantize, write_palette_image): its command-line start-up is measured apart. Measured on the
written files: size, RGB MSE and mean CIE76 ΔE against the original, and the MSE after a Gaussian blur
(sigma 1.5), the error an eye sees at a distance, which dithering is there to lower. Prints markdown tables
(medians, and medians of per-image ratios cbir/pngquant) and the load average; with --picture, writes the
side-by-side picture of docs/benchmarks.md.

    python tests/benchmarks/bench_pngquant.py [--data ../shared/data/kodak] [--ks 16,64,256] [--limit N]
        [--picture docs/img/quantize-vs-pngquant.png]
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from cbir.core.quantize import mean_delta_e, quantize, rgb_mse
from cbir.imageio import read_image, write_image, write_palette_image
from cbir.viz.sheets import comparison_sheet

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data", "kodak"))
MODES = (("none", ["--nofs"]), ("floyd-steinberg", []))


def blurred_mse(a, b):
    blur = lambda x: cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.5)  # noqa: E731
    return float(np.mean((blur(a) - blur(b)) ** 2))


def run_pngquant(source, target, k, flags, threads):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run(["pngquant", str(k), "--force", "--output", target, *flags, source], check=True, env=env)
    return time.perf_counter() - start


def run_cbir(source, target, k, dither):
    start = time.perf_counter()
    q = quantize(read_image(source, alpha=True), k, dither=dither)
    write_palette_image(target, q.labels, q.palette_colours)
    return time.perf_counter() - start


def measure(original, path):
    image = read_image(path)
    return {"bytes": os.path.getsize(path), "mse": rgb_mse(original, image), "de": mean_delta_e(original, image),
            "blur": blurred_mse(original, image)}


def cli_startup():
    """Seconds for `cbir quantize --help` in a fresh process: what a per-image command pays on top."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cbir", "quantize", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--ks", default="16,64,256")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--picture", help="write the side-by-side picture here (kodim23, k=16, Floyd-Steinberg)")
    args = parser.parse_args()
    if shutil.which("pngquant") is None:
        print("pngquant is not installed (Debian: apt-get install pngquant): nothing to compare against; skipped")
        return
    files = sorted(glob.glob(os.path.join(args.data, "*.png")))[:args.limit]
    if not files:
        print(f"no PNG images in {args.data}: skipped")
        return
    ks = [int(k) for k in args.ks.split(",")]
    version = subprocess.run(["pngquant", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"pngquant {version}; {len(files)} images; load average at start: {open('/proc/loadavg').read().split()[:3]}")
    quantize(read_image(files[0]), 2)  # warm-up
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            for mode, flags in MODES:
                for path in files:
                    original = read_image(path)
                    out = {name: os.path.join(tmp, f"{name}.png") for name in ("pq", "pq1", "cbir")}
                    t_pq = run_pngquant(path, out["pq"], k, flags, None)
                    t_pq1 = run_pngquant(path, out["pq1"], k, flags, 1)
                    t_cbir = run_cbir(path, out["cbir"], k, mode)
                    pq, ours = measure(original, out["pq"]), measure(original, out["cbir"])
                    rows.setdefault((k, mode), []).append({"pq": pq, "cbir": ours, "t_pq": t_pq, "t_pq1": t_pq1,
                                                           "t_cbir": t_cbir})
        load_end = open("/proc/loadavg").read().split()[:3]
        startup = cli_startup()
        if args.picture:
            write_picture(args.picture, files, tmp)
    print()
    print("| k | dither | size pngquant | size cbir | ratio | RGB MSE pngquant | cbir | ratio | mean ΔE pngquant | "
          "cbir | ratio | blurred MSE pngquant | cbir |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (k, mode), items in rows.items():
        med = lambda tool, key: statistics.median(r[tool][key] for r in items)  # noqa: E731
        ratio = lambda key: statistics.median(r["cbir"][key] / r["pq"][key] for r in items)  # noqa: E731
        print(f"| {k} | {mode} | {med('pq', 'bytes') / 1024:.1f} KiB | {med('cbir', 'bytes') / 1024:.1f} KiB | "
              f"{ratio('bytes'):.3f} | {med('pq', 'mse'):.2f} | {med('cbir', 'mse'):.2f} | {ratio('mse'):.3f} | "
              f"{med('pq', 'de'):.3f} | {med('cbir', 'de'):.3f} | {ratio('de'):.3f} | {med('pq', 'blur'):.2f} | "
              f"{med('cbir', 'blur'):.2f} |")
    print()
    print("| k | dither | pngquant (OpenMP) | pngquant, 1 thread | cbir (in process) | cbir / pngquant | "
          "cbir / pngquant 1 thread |")
    print("|---|---|---|---|---|---|---|")
    for (k, mode), items in rows.items():
        med = lambda key: statistics.median(r[key] for r in items)  # noqa: E731
        ratio = lambda key: statistics.median(r["t_cbir"] / r[key] for r in items)  # noqa: E731
        print(f"| {k} | {mode} | {med('t_pq') * 1000:.0f} ms | {med('t_pq1') * 1000:.0f} ms | "
              f"{med('t_cbir') * 1000:.0f} ms | {ratio('t_pq'):.2f} | {ratio('t_pq1'):.2f} |")
    print()
    print(f"cbir command-line start-up (`python -m cbir quantize --help`, median of 5): {startup * 1000:.0f} ms")
    print(f"load average at end: {load_end}")


def write_picture(target, files, tmp, name="kodim23.png", k=16):
    """Original, cbir and pngquant (both Floyd-Steinberg) side by side, a crop at full scale, with file sizes."""
    path = next((f for f in files if os.path.basename(f) == name), files[0])
    ours, theirs = os.path.join(tmp, "picture-cbir.png"), os.path.join(tmp, "picture-pq.png")
    run_cbir(path, ours, k, "floyd-steinberg")
    run_pngquant(path, theirs, k, [], None)
    original = read_image(path)
    crop = (slice(60, 330), slice(250, 610))
    tiles = [([f"cbir, {k} colours, Floyd-Steinberg", f"{os.path.getsize(ours) / 1024:.1f} KiB"], read_image(ours)),
             ([f"pngquant, {k} colours (default)", f"{os.path.getsize(theirs) / 1024:.1f} KiB"], read_image(theirs))]
    sheet = comparison_sheet(original[crop], [(caption, image[crop]) for caption, image in tiles], tile=360)
    write_image(target, sheet)
    print(f"wrote {target} (original PNG {os.path.getsize(path) / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
