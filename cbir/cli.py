"""The ``cbir`` command line: thin wrappers that parse, call one library function and render.

The only module that imports typer or rich. Library errors (CbirError) become ``Error: ...`` on stderr with exit
code 1; usage errors stay typer's exit code 2. ``--json`` prints exactly one JSON document on stdout.
"""

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .decode import encode_image, read_image, write_image
from .errors import CbirError
from .quantize import mean_delta_e, quantize, rgb_mse
from .render import comparison_sheet, palette_swatch

app = typer.Typer(
    help="Content-based image retrieval by k-means colour histograms and the QBIC quadratic-form distance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False)

# Options shared by several commands, defined once.
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
SpaceOption = Annotated[str, typer.Option("--space", help="Colour space of the k-means: lab (CIELAB) or rgb.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the k-means++ initialisation.")]


def fail(message):
    """Print ``Error: message`` on stderr and exit with code 1."""
    stderr.print(f"Error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(1)


def reports_errors(command):
    """Turn library errors raised by a command into ``Error: ...`` with exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CbirError as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted")

    return wrapper


def parse_sweep(value):
    if value is None:
        return []
    try:
        ks = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 5,8,25") from None
    if not ks or min(ks) < 1:
        raise typer.BadParameter("every k must be a positive integer, e.g. 5,8,25")
    return ks


def check_writable_image_path(path):
    """Refuse an output path whose format cannot be written before any work is done."""
    if path is not None:
        encode_image(__import__("numpy").zeros((1, 1, 3), "uint8"), path.suffix.lower() or ".png")


def print_json(document):
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False,
):
    if version:
        stdout.print(f"cbir {__version__}")
        raise typer.Exit()


@app.command("quantize")
@reports_errors
def quantize_command(
    image: Annotated[Path, typer.Argument(help="Image file to posterize.", show_default=False)],
    k: Annotated[
        Optional[list[int]],
        typer.Option("-k", "--colors", min=1, help="Number of colours; repeat for several (default 8)."),
    ] = None,
    sweep: Annotated[
        Optional[str], typer.Option("--sweep", help="Comma-separated list of k, e.g. 5,8,25,35,45.")
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("-o", "--output", help="Write the posterized image; with several k, a comparison sheet."),
    ] = None,
    palette: Annotated[
        Optional[Path], typer.Option("--palette", help="Write the palette as a swatch, colours sized by share.")
    ] = None,
    space: SpaceOption = "lab",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
):
    """Posterize an image to k colours by k-means colour quantization."""
    ks = list(dict.fromkeys((k or []) + parse_sweep(sweep))) or [8]
    if space not in ("lab", "rgb"):
        raise typer.BadParameter("choose lab or rgb", param_hint="--space")
    check_writable_image_path(output)
    check_writable_image_path(palette)
    original = read_image(image)
    results = []
    for n_colours in ks:
        start = time.perf_counter()
        q = quantize(original, n_colours, space=space, seed=seed)
        results.append((n_colours, q, time.perf_counter() - start))

    errors = {n: (rgb_mse(original, q.image), mean_delta_e(original, q.image)) for n, q, _ in results}
    if output is not None:
        if len(results) == 1:
            write_image(output, results[0][1].image)
        else:
            captions = [([f"k={n}  MSE {errors[n][0]:.1f}", f"mean dE {errors[n][1]:.2f}"], q.image)
                        for n, q, _ in results]
            write_image(output, comparison_sheet(original, captions))
    if palette is not None:
        import numpy as np

        write_image(palette, np.vstack([palette_swatch(q.palette_rgb, q.shares) for _, q, _ in results]))

    if json_output:
        print_json({
            "image": str(image),
            "width": original.shape[1],
            "height": original.shape[0],
            "space": space,
            "seed": seed,
            "results": [
                {
                    "k": n,
                    "colors": len(q.shares),
                    "palette": [{"hex": "#%02x%02x%02x" % tuple(int(v) for v in c), "share": round(float(s), 6)}
                                for c, s in zip(q.palette_rgb, q.shares)],
                    "rgb_mse": round(errors[n][0], 4),
                    "mean_delta_e": round(errors[n][1], 4),
                    "seconds": round(seconds, 4),
                }
                for n, q, seconds in results
            ],
        })
        return
    table = Table("k", "colours", "RGB MSE", "mean ΔE", "time")
    for n, q, seconds in results:
        table.add_row(str(n), str(len(q.shares)), f"{errors[n][0]:.1f}", f"{errors[n][1]:.2f}",
                      f"{seconds * 1000:.0f} ms")
    stdout.print(table)
    for path in (output, palette):
        if path is not None:
            stderr.print(f"wrote {path}", markup=False)


def main():
    app()
