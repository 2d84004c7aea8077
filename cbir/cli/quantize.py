"""``cbir quantize``: posterize an image to k colours."""

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from ..core.quantize import quantize_sweep
from ..imageio import read_image, write_image
from ..viz.sheets import comparison_sheet, palette_swatch
from .options import JsonOption, SeedOption, SpaceOption
from .output import check_writable_image_path, print_json, reports_errors, stderr, stdout


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
    results = quantize_sweep(original, ks, space=space, seed=seed)
    write_pictures(original, results, output, palette)
    if json_output:
        print_json(as_json(image, original, space, seed, results))
        return
    table = Table("k", "colours", "RGB MSE", "mean ΔE", "time")
    for r in results:
        table.add_row(str(r.k), str(len(r.quantization.shares)), f"{r.rgb_mse:.1f}", f"{r.mean_delta_e:.2f}",
                      f"{r.seconds * 1000:.0f} ms")
    stdout.print(table)
    for path in (output, palette):
        if path is not None:
            stderr.print(f"wrote {path}", markup=False)


def write_pictures(original, results, output, palette):
    """The posterized image (a comparison sheet for several k) and the palette swatch, where asked for."""
    if output is not None:
        if len(results) == 1:
            write_image(output, results[0].quantization.image)
        else:
            captions = [([f"k={r.k}  MSE {r.rgb_mse:.1f}", f"mean dE {r.mean_delta_e:.2f}"], r.quantization.image)
                        for r in results]
            write_image(output, comparison_sheet(original, captions))
    if palette is not None:
        write_image(palette, np.vstack([palette_swatch(r.quantization.palette_rgb, r.quantization.shares)
                                        for r in results]))


def as_json(image, original, space, seed, results):
    return {
        "image": str(image),
        "width": original.shape[1],
        "height": original.shape[0],
        "space": space,
        "seed": seed,
        "results": [
            {
                "k": r.k,
                "colors": len(r.quantization.shares),
                "palette": [{"hex": "#%02x%02x%02x" % tuple(int(v) for v in c), "share": round(float(s), 6)}
                            for c, s in zip(r.quantization.palette_rgb, r.quantization.shares)],
                "rgb_mse": round(r.rgb_mse, 4),
                "mean_delta_e": round(r.mean_delta_e, 4),
                "seconds": round(r.seconds, 4),
            }
            for r in results
        ],
    }
