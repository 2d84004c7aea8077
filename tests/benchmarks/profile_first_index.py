"""Where a first index spends its time: a cProfile of ``Index.add(folder, workers=1)`` on the photos of
bench_first_index.py (docs/benchmarks.md, "What is left above a decode").

Makes the N 1024x768 JPEGs as bench_first_index.py does, times the plain full-decode loop and a half-scale decode
loop over them (CPU time), indexes them once to warm the process (imports, caches), then profiles a second fresh
index and prints the functions by cumulative time.

    python tests/benchmarks/profile_first_index.py [--images 600] [--kodak ../shared/data/kodak] [--top 45]
"""

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

import cv2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from bench_first_index import decode_all, make_photos  # noqa: E402

from cbir import Index  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--kodak", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/kodak"))
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "photos")
        os.mkdir(folder)
        files = make_photos(args.kodak, folder, args.images)

        def index(name):
            with Index.open(os.path.join(scratch, name), create=True) as opened:
                opened.add(folder, workers=1)

        decode_all(files)
        index("warm.db")
        for name, flags in (("full decode loop", cv2.IMREAD_COLOR), ("half-scale decode loop",
                                                                     cv2.IMREAD_REDUCED_COLOR_2)):
            start = time.process_time()
            decode_all(files, flags)
            print(f"{name}: {time.process_time() - start:.2f} s CPU")
        profile = cProfile.Profile()
        start = time.process_time()
        profile.runcall(index, "profiled.db")
        print(f"first index, profiled: {time.process_time() - start:.2f} s CPU")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)
    print(f"load average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
