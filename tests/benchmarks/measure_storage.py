"""How sparse real histograms are, what storing them compactly costs on disk, and what the rounding does to rankings.

Real photos: Wang 1000 (256x256) and the 24 Kodak images (768x512), decoded as cbir indexes them, described with
the codebook learned from them (K = 128, default global+3x3 layout: 1,280 shares). Prints:

- non-zero shares per photo and per block, the smallest non-zero share;
- bytes per histogram: float32 (schema 1), dense uint16, and the schema-3 BLOB (bitmap + uint16 of the non-zero
  cube-root steps), as cbir.store.codec writes it;
- for each way of rounding (cbir's cube-root steps; linear steps of 1/65536 and 1/255 for comparison), against
  the float32 histograms: positions of the full rankings of every photo against every other that change, the
  largest change of a distance, the share of each top 10 kept, and Wang's MAP (every image queries the others,
  relevant = same class) next to the float32 MAP.

    python tests/benchmarks/measure_storage.py
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    import synthetic

    from cbir.core.histogram import block_weights, histogram
    from cbir.core.metrics import average_precision
    from cbir.core.qfd import factor as qfd_factor
    from cbir.core.qfd import similarity_matrix
    from cbir.imageio import read_image
    from cbir.settings import Settings
    from cbir.store import codec

    bases = synthetic.Bases()
    settings = Settings()
    paths = sorted((os.path.join(synthetic.SHARED, "wang1000", f) for f in os.listdir(
        os.path.join(synthetic.SHARED, "wang1000")) if f.endswith(".jpg")), key=lambda p: int(os.path.basename(p)[:-4]))
    paths += sorted(os.path.join(synthetic.SHARED, "kodak", f) for f in os.listdir(
        os.path.join(synthetic.SHARED, "kodak")) if f.endswith(".png"))
    real = np.array([histogram(read_image(p, min_side=settings.min_side), bases.lut, bases.k, settings.layout)
                     for p in paths])
    blocks = real.reshape(len(real), 10, bases.k)
    present = blocks > 0
    print(f"photos: {len(real)} (Wang {len(paths) - 24}, Kodak 24); shares per histogram: {real.shape[1]}")
    print(f"non-zero shares per photo: mean {present.sum((1, 2)).mean():.0f}, median "
          f"{np.median(present.sum((1, 2))):.0f}, 95th percentile {np.percentile(present.sum((1, 2)), 95):.0f}; "
          f"Kodak mean {present[-24:].sum((1, 2)).mean():.0f}")
    print(f"per block: global {present[:, 0].sum(1).mean():.1f}, a region {present[:, 1:].sum(2).mean():.1f} of "
          f"{bases.k}; smallest non-zero share {real[real > 0].min():.2e}")
    blobs = [codec.encode(codec.quantise(h)) for h in real]
    print(f"bytes per histogram: float32 {4 * real.shape[1]}, dense uint16 {2 * real.shape[1]}, schema-3 BLOB "
          f"mean {np.mean([len(b) for b in blobs]):.0f} (max {max(len(b) for b in blobs)})")

    labels = np.arange(len(paths) - 24) // 100
    factor = qfd_factor(similarity_matrix(bases.codebook, settings.kernel, settings.sigma))
    scale = np.sqrt(block_weights(settings.layout))[:, None]

    def rankings(vectors):
        """Every photo against every photo, in float64: rows best first, and their distances."""
        y = (np.cbrt(vectors.astype(np.float64)).reshape(-1, bases.k) @ factor).reshape(len(vectors), 10, -1)
        y = (y * scale).reshape(len(vectors), -1)
        squares = (y * y).sum(1)
        d = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * y @ y.T, 0))
        rows = np.argsort(d, axis=1, kind="stable")
        return rows, np.take_along_axis(d, rows, 1)

    def wang_map(rows):
        aps = []
        for i in range(len(labels)):
            ranked = [r for r in rows[i] if r != i and r < len(labels)]
            aps.append(average_precision(labels[ranked] == labels[i]))
        return float(np.mean(aps))

    base_rows, base_distances = rankings(real)
    print(f"float32: Wang MAP {wang_map(base_rows):.4f}")
    ways = {"cube-root steps of 1/65535 (cbir)": codec.stored_form,
            "linear steps of 1/65536": lambda v: (np.rint(v * 65536) / 65536).astype(np.float32),
            "linear steps of 1/255": lambda v: (np.rint(v * 255) / 255).astype(np.float32)}
    for name, rounding in ways.items():
        rows, distances = rankings(rounding(real))
        top = np.mean([len(set(a[:11]) & set(b[:11])) / 11 for a, b in zip(base_rows, rows)])  # itself + 10
        print(f"{name}: {int((rows != base_rows).sum())} of {rows.size} ranking positions change, largest distance "
              f"change {np.abs(distances - base_distances).max():.2e}, top 10 kept {top:.4f}, Wang MAP "
              f"{wang_map(rows):.4f}")


if __name__ == "__main__":
    main()
