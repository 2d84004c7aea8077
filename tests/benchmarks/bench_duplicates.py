"""Finding copies: cbir duplicates against perceptual hashes, per kind of copy (the figures of docs/benchmarks.md).

Two benchmark sets are generated at run time in a temporary folder (the shared photos are never copied into the
repository): originals, ten copies of each, and distractors.
- tune: the 24 Kodak photos and Wang images 0, 10, 20, ... 990 (124 originals); the other 900 Wang images distract.
  cbir's thresholds (cbir.core.duplicates.Rule) were chosen on this set (``--grid`` repeats the search).
- confirm: Wang images 5, 15, ... 995 and the first view of ukbench objects 0-99 (200 originals); the other Wang
  images and every other ukbench image distract, among them 3 other views of each original object: burst-like
  neighbours that are different photos.
Copies: resized to 50%, JPEG quality 30, cropped 5% and 15% (off-centre), rotated 90 and 180 degrees, mirrored,
brightness +15%, a colour cast of about 10 per channel, a small text overlay; all but the JPEG-30 copy saved as
JPEG quality 90. Ground truth: an original and its copies form a group; every other pair is false.

Per kind of copy t (the protocol): among the pairs that involve a copy of kind t (within originals, distractors and
the copies of kind t), precision = true pairs found / pairs found, recall = true pairs found / true pairs. The
last columns count false pairs found among originals and distractors alone (the sets hold real near-duplicates:
Wang has bursts of horses and elephants, ukbench 4 views per object), and ukbench same-object pairs found.
cbir is judged on its groups (every pair within a reported group counts as found: what a user sees); the hashes
on their pairs within a Hamming threshold (imagededup's default 10, and the threshold with the best F1 over the
whole tune set, used unchanged on the confirm set).

Peers (optional benchmark dependencies, never runtime ones): imagehash (phash, dhash, whash, colorhash) and
imagededup's hashing methods (PHash, DHash, WHash, AHash). imagededup's package __init__ imports torch for its CNN
method, which its hashing does not use; install it without dependencies and load its hashing module alone:

    pip install imagehash PyWavelets scikit-learn scipy tqdm && pip install --no-deps imagededup
    python tests/benchmarks/bench_duplicates.py [--data ../shared/data] [--no-peers] [--grid]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import os
import sys
import tempfile
import time
import types

import cv2
import numpy as np

from cbir.core import duplicates as dup
from cbir.index import Index

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data"))
TRANSFORMS = ("resize50", "jpeg30", "crop5", "crop15", "rot90", "rot180", "mirror", "bright15", "cast10", "text")
PEERS = ("ih_phash", "ih_dhash", "ih_whash", "ih_colorhash", "ded_phash", "ded_dhash", "ded_whash", "ded_ahash")


# --- the benchmark sets -------------------------------------------------------------------------------------------
def transformed(name, img, rng):
    h, w = img.shape[:2]
    if name == "resize50":
        return cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    if name == "jpeg30":
        return img
    if name in ("crop5", "crop15"):
        f = int(name[4:]) / 100  # keep 1 - f of each side, off-centre like a hand crop
        dy, dx = round(h * f), round(w * f)
        y0, x0 = dy // 3, dx * 2 // 3
        return img[y0 : h - (dy - y0), x0 : w - (dx - x0)]
    if name == "rot90":
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if name == "rot180":
        return cv2.rotate(img, cv2.ROTATE_180)
    if name == "mirror":
        return np.ascontiguousarray(img[:, ::-1])
    if name == "bright15":
        return np.clip(img.astype(np.float32) * 1.15 + 0.5, 0, 255).astype(np.uint8)
    if name == "cast10":
        shift = rng.choice([-10, 10], 3) + rng.integers(-2, 3, 3)
        return np.clip(img.astype(np.int16) + shift, 0, 255).astype(np.uint8)
    if name == "text":
        out = img.copy()
        scale = h / 600
        for colour, thick in (((0, 0, 0), 4), ((255, 255, 255), 2)):
            cv2.putText(out, "2019-07-14 Holiday", (int(0.05 * w), int(0.92 * h)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        colour, max(1, round(thick * scale)), cv2.LINE_AA)
        return out
    raise ValueError(name)


def set_sources(data, name):
    kodak = sorted(os.path.join(data, "kodak", f) for f in os.listdir(os.path.join(data, "kodak")) if f.endswith(".png"))
    wang = [os.path.join(data, "wang1000", f"{i}.jpg") for i in range(1000)]
    if name == "tune":
        originals = kodak + wang[0::10]
        return originals, [w for w in wang if w not in set(originals)]
    ukbench = [os.path.join(data, "ukbench1000", f"ukbench{i:05d}.jpg") for i in range(1000)]
    originals = wang[5::10] + ukbench[0:400:4]
    return originals, [p for p in wang + ukbench if p not in set(originals)]


def make_set(folder, originals, distractors):
    """Write the set; returns rows (file name, group, kind) with group -1 for distractors."""
    rng = np.random.default_rng(17)
    rows = []
    for group, source in enumerate(originals):
        image = cv2.imread(source, cv2.IMREAD_COLOR)
        tag = os.path.basename(os.path.dirname(source))[0] + os.path.splitext(os.path.basename(source))[0]
        name = f"{tag}_original{os.path.splitext(source)[1]}"
        with open(source, "rb") as f, open(os.path.join(folder, name), "wb") as out:
            out.write(f.read())
        rows.append((name, group, "original"))
        for kind in TRANSFORMS:
            name = f"{tag}_{kind}.jpg"
            cv2.imwrite(os.path.join(folder, name), transformed(kind, image, rng),
                        [cv2.IMWRITE_JPEG_QUALITY, 30 if kind == "jpeg30" else 90])
            rows.append((name, group, kind))
    for source in distractors:
        name = "d_" + os.path.basename(source)
        with open(source, "rb") as f, open(os.path.join(folder, name), "wb") as out:
            out.write(f.read())
        rows.append((name, -1, "distractor"))
    return rows


# --- peers --------------------------------------------------------------------------------------------------------
def imagededup_hashing():
    """imagededup's hashing module without its package __init__ (which imports torch for the CNN method)."""
    if "imagededup.methods.hashing" in sys.modules:
        return sys.modules["imagededup.methods.hashing"]
    spec = importlib.util.find_spec("imagededup")
    if spec is None:
        return None
    root = os.path.dirname(spec.origin)
    for name, sub in (("imagededup", ""), ("imagededup.methods", "methods"), ("imagededup.utils", "utils"),
                      ("imagededup.handlers", "handlers"), ("imagededup.handlers.search", "handlers/search")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [os.path.join(root, sub)]
            sys.modules[name] = module
    return importlib.import_module("imagededup.methods.hashing")


def peer_hashes(folder, names):
    """{peer: (N, bits) uint8} and {peer: seconds} for the peers that are installed."""
    hashers = {}
    try:
        import imagehash
        hashers.update(ih_phash=imagehash.phash, ih_dhash=imagehash.dhash, ih_whash=imagehash.whash,
                       ih_colorhash=imagehash.colorhash)
    except ImportError:
        print("imagehash is not installed: its hashes are left out", file=sys.stderr)
    hashing = imagededup_hashing()
    if hashing is None:
        print("imagededup is not installed: its hashes are left out", file=sys.stderr)
    from PIL import Image
    out = {k: [] for k in hashers}
    ded = {} if hashing is None else {"ded_phash": hashing.PHash(verbose=False), "ded_dhash": hashing.DHash(verbose=False),
                                      "ded_whash": hashing.WHash(verbose=False), "ded_ahash": hashing.AHash(verbose=False)}
    out.update({k: [] for k in ded})
    seconds = {k: 0.0 for k in out}
    for name in names:
        path = os.path.join(folder, name)
        for key, encoder in ded.items():
            started = time.perf_counter()
            out[key].append(np.unpackbits(np.frombuffer(bytes.fromhex(encoder.encode_image(image_file=path)), np.uint8)))
            seconds[key] += time.perf_counter() - started
        if hashers:
            with Image.open(path) as image:
                image.load()
                for key, function in hashers.items():
                    started = time.perf_counter()
                    out[key].append(function(image).hash.astype(np.uint8).ravel())
                    seconds[key] += time.perf_counter() - started
    return {k: np.array(v) for k, v in out.items()}, seconds


def hamming(bits):
    b = bits.astype(np.float32)
    return b @ (1 - b).T + (1 - b) @ b.T


# --- metrics ------------------------------------------------------------------------------------------------------
class Truth:
    def __init__(self, rows):
        self.names = [r[0] for r in rows]
        self.group = np.array([r[1] for r in rows])
        self.kind = np.array([r[2] for r in rows])
        n = len(rows)
        self.true = (self.group[:, None] == self.group[None, :]) & (self.group[:, None] >= 0)
        np.fill_diagonal(self.true, False)
        self.upper = np.triu(np.ones((n, n), bool), 1)
        plain = np.isin(self.kind, ["original", "distractor"])
        self.untouched = plain[:, None] & plain[None, :] & self.upper
        ukbench = np.array([name.startswith(("d_ukbench", "uukbench")) and ("_" not in name[2:] or
                            name.endswith("_original.jpg")) for name in self.names])
        obj = np.array([int(name.split("ukbench")[1][:5]) // 4 if u else -1 for name, u in zip(self.names, ukbench)])
        self.burst = ukbench[:, None] & ukbench[None, :] & (obj[:, None] == obj[None, :]) & self.upper

    def mask(self, kind):
        if kind == "all":
            return self.upper
        sel = np.isin(self.kind, ["original", "distractor", kind])
        copy = self.kind == kind
        return sel[:, None] & sel[None, :] & (copy[:, None] | copy[None, :]) & self.upper

    def scores(self, found, kind):
        m = self.mask(kind)
        hit = (found & self.true & m).sum()
        precision = hit / max((found & m).sum(), 1)
        recall = hit / max((self.true & m).sum(), 1)
        return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)

    def best_threshold(self, distances):
        d, t = distances[self.upper], self.true[self.upper]
        order = np.argsort(d, kind="stable")
        d, t = d[order], t[order]
        hits = np.cumsum(t)
        f1 = 2 * hits / (np.arange(1, len(d) + 1) + t.sum())
        f1[:-1][d[1:] == d[:-1]] = 0  # only whole steps of the threshold
        return float(d[np.argmax(f1)])


def direct_pairs(report, row_of, n):
    """The pairs cbir found directly (what joins its groups)."""
    found = np.zeros((n, n), bool)
    for pair in report.pairs:
        a, b = row_of[os.path.basename(pair.path)], row_of[os.path.basename(pair.other)]
        found[min(a, b), max(a, b)] = True
    return found


def grouped(found):
    """Every pair within the connected groups of ``found`` pairs: what a user sees as groups."""
    n = len(found)
    i, j = np.nonzero(found)
    labels = dup.connected_groups(n, i, j)
    return (labels[:, None] == labels[None, :]) & np.triu(np.ones((n, n), bool), 1)


def table(truth, methods):
    kinds = list(TRANSFORMS) + ["all"]
    print("| method | " + " | ".join(kinds) + " | false pairs among originals and distractors | ukbench bursts found |")
    print("|---|" + "---|" * (len(kinds) + 2))
    best = {}
    for name, found in methods.items():
        f1 = [truth.scores(found, k)[2] for k in kinds]
        if not name.startswith("cbir"):
            best = {k: max(best.get(k, 0), f) for k, f in zip(kinds, f1)}
        print(f"| {name} | " + " | ".join(f"{f:.3f}" for f in f1) + f" | {(found & truth.untouched & ~truth.true).sum()}"
              f" | {(found & truth.burst).sum()}/{truth.burst.sum()} |")
    if best:
        print("| best hash | " + " | ".join(f"{best[k]:.3f}" for k in kinds) + " | | |")
    print()
    for what, at in (("Precision", 0), ("Recall", 1)):
        print(f"{what} of cbir, tiers 1-3, per kind: " + ", ".join(
            f"{k} {truth.scores(methods['cbir, tiers 1-3'], k)[at]:.3f}" for k in TRANSFORMS))
    print("Precision of tier 2 over all pairs: {:.4f} ({} false pairs)".format(
        truth.scores(methods["cbir tier 2 only"], "all")[0],
        int((methods["cbir tier 2 only"] & ~truth.true).sum())))


# --- the rule's constants -----------------------------------------------------------------------------------------
def grid(truth, row_of, reference, paths, colour, thumbs, layout):
    """The search that chose Rule's constants on the tune set: every pair measured, each rule's pairs scored. Among
    the rules whose F1 is at least ``reference``'s (the best hash's F1 per kind) on every kind, the best has the
    highest mean F1 over the kinds."""
    engine_rows = np.array([row_of[os.path.basename(p)] for p in paths])
    n = len(paths)
    structure = dup.structure_vectors(thumbs)
    perms = dup.block_permutations(layout)
    colour = colour.reshape(n, len(perms[0]), -1)
    i, j = np.triu_indices(n, 1)
    c, e, _ = dup.pair_distances(colour, structure, i, j, perms)
    a, b = engine_rows[i], engine_rows[j]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    results = []
    for scale, shape, edit in itertools.product((0.6, 0.65, 0.7, 0.75, 0.8), (1.2, 1.5, 2.0, 3.0), (0.1, 0.15, 0.2)):
        rule = dup.Rule(colour_scale=scale, structure_scale=shape, edit_structure=edit)
        found = np.zeros((len(truth.names),) * 2, bool)
        found[lo, hi] = rule.near_distance(c, e) <= 1
        f1 = np.array([truth.scores(found, k)[2] for k in TRANSFORMS])
        margin = (f1 - np.array([reference.get(k, 0) for k in TRANSFORMS])).min()
        results.append((margin >= -1e-9, f1.mean(), margin, f1[TRANSFORMS.index("crop15")], scale, shape, edit))
    results.sort(reverse=True)
    default = dup.Rule()
    print("Rule constants on the tune set (pairs found directly): rules at least as good as the best hash on every "
          "kind first, then by mean F1 over the kinds (* the default):\n")
    print("| at least the best hash | mean F1 | worst margin | crop15 F1 | colour_scale | structure_scale | "
          "edit_structure |\n|---|---|---|---|---|---|---|")
    for ok, mean, margin, crop, scale, shape, edit in results[:10]:
        mark = " *" if (scale, shape, edit) == (default.colour_scale, default.structure_scale,
                                                 default.edit_structure) else ""
        print(f"| {'yes' if ok else 'no'} | {mean:.3f}{mark} | {margin:+.3f} | {crop:.3f} | {scale} | {shape} | "
              f"{edit} |")
    print()


def run_set(name, data, peers, thresholds, do_grid):
    originals, distractors = set_sources(data, name)
    with tempfile.TemporaryDirectory() as folder:
        photos = os.path.join(folder, "photos")
        os.mkdir(photos)
        rows = make_set(photos, originals, distractors)
        truth = Truth(rows)
        row_of = {r[0]: k for k, r in enumerate(rows)}
        n = len(rows)
        print(f"## {name} set: {len(originals)} originals x 10 copies, {len(distractors)} distractors ({n} images)\n")
        with Index.open(os.path.join(folder, "photos.db"), create=True) as index:
            started = time.perf_counter()
            index.add(photos, workers=1)
            indexed = time.perf_counter() - started
            report = index.duplicates()
            tier2 = index.duplicates(tier=2)
            ids, paths = index.image_paths()
            colour = index._loaded().backend.transformed.copy() if do_grid else None  # benchmark only
            thumbs = index._store.structure_thumbnails(ids)[0] if do_grid else None
            layout = index.settings.layout
        methods = {"cbir, tiers 1-3": direct_pairs(report, row_of, n),
                   "cbir tier 2 only": direct_pairs(tier2, row_of, n)}
        seconds = {}
        if peers:
            hashes, seconds = peer_hashes(photos, truth.names)
            for key in PEERS:
                if key not in hashes:
                    continue
                distances = hamming(hashes[key])
                own = name == "tune" or key not in thresholds
                if own:
                    thresholds[key] = truth.best_threshold(distances)
                methods[f"{key} <= {thresholds[key]:g} (best on {'this set' if own else 'tune'})"] = \
                    distances <= thresholds[key]
                if key != "ih_colorhash":
                    methods[f"{key} <= 10"] = distances <= 10
        if do_grid:
            reference = {k: max([truth.scores(found, k)[2] for key, found in methods.items()
                                 if not key.startswith("cbir")] or [0]) for k in TRANSFORMS}
            grid(truth, row_of, reference, paths, colour, thumbs, layout)
        print("F1 per kind of copy, pairs found directly:\n")
        table(truth, methods)
        print("\nF1 per kind of copy, every pair within the groups those pairs join (what a user sees):\n")
        table(truth, {name: grouped(found) for name, found in methods.items()})
        print(f"\ncbir: indexing {indexed:.1f} s (1 process), duplicates {report.seconds:.2f} s "
              f"({report.pairs_measured} candidate pairs measured); " +
              ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f"; load {os.getloadavg()[0]:.2f}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--grid", action="store_true", help="repeat the search for the rule's constants")
    parser.add_argument("--sets", default="tune,confirm")
    args = parser.parse_args()
    thresholds = {}
    for name in args.sets.split(","):
        run_set(name, args.data, not args.no_peers, thresholds, args.grid and name == "tune")


if __name__ == "__main__":
    main()
