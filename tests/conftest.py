"""Fixtures shared by the test modules; helpers (functions, paths of the shared data) are in helpers/."""

import os

# Tests check results, not BLAS parallelism. On a busy shared machine OpenBLAS's spinning threads more than doubled
# the CPU time of the quick loop (44 s against 20 s of user time in one comparison); set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest


@pytest.fixture
def photo():
    """A small synthetic 'photo': smooth gradients plus noise, (48, 64, 3) uint8."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.float64)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def many_photos(tmp_path):
    """A folder of 40 small photos (PNG and JPEG, some in a subfolder) and two broken files."""
    from helpers import make_photo

    from cbir.imageio import write_image

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(40):
        write_image(folder / ("sub" if i % 3 else "") / f"p{i:03d}.{'jpg' if i % 2 else 'png'}",
                    make_photo(i, size=(30 + i, 50)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture
def cli():
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from cbir.cli import app

    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2 mixes stderr into stdout unless told not to
    except TypeError:
        runner = CliRunner()  # click >= 8.2 keeps them apart and has no such option

    def run(*args, env=None):
        result = runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return run
