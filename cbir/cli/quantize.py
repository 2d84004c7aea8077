"""``cbir quantize``: quantize an image to k colours, written as a palette image (indexed PNG or GIF)."""

import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import typer
from rich.table import Table

from ..core.colour import QUANTIZE_SPACES
from ..core.quantize import DITHERS, over_white, quantize_sweep
from ..imageio import PALETTE_FORMATS, palette_bit_depth, read_image, write_image, write_palette_image
from ..viz.sheets import comparison_sheet, palette_swatch
from .options import JsonOption, QuietOption, SeedOption
from .output import check_writable_image_path, one_line, print_json, reports_errors, stderr, stdout

QuantizeSpaceOption = Annotated[Literal[QUANTIZE_SPACES], typer.Option(
    "--space", help="Colour space of the k-means: rgblab (RGB and CIELAB together: low RGB error and low ΔE), "
                    "lab (lowest ΔE) or rgb (lowest RGB error).")]


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
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="Image file to posterize.", show_default=False)],
    k: Annotated[Optional[list[int]], typer.Option(
        "-k", metavar="K", min=1, help="Colours of the palette; repeat for several (default 8).")] = None,
    sweep: Annotated[Optional[str], typer.Option(
        "--sweep", metavar="K,K,...", help="Comma-separated list of k, e.g. 5,8,25,35,45.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", metavar="FILE", help="Write the quantized image: .png and .gif as a palette image "
                                               "(indexed, alpha kept), other formats in true colour; with several k, "
                                               "a comparison sheet.")] = None,
    palette: Annotated[Optional[Path], typer.Option(
        "--palette", metavar="FILE", help="Write the palette as a swatch, colours sized by share.")] = None,
    space: QuantizeSpaceOption = "rgblab",
    dither: Annotated[Literal[DITHERS], typer.Option(
        "--dither", help="none: every pixel its nearest palette colour; floyd-steinberg: error diffusion with the "
                         "same palette, where the undithered image would show flat bands.")] = "none",
    rgb: Annotated[bool, typer.Option(
        "--rgb", help="Write a .png in true colour (24-bit, or 32 with alpha) instead of as a palette image.")] = False,
    seed: SeedOption = 0,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
):
    """Quantize an image to k colours by k-means colour quantization (at most 256 for a palette image)."""
    ks = list(dict.fromkeys((k or []) + parse_sweep(sweep))) or [8]
    check_writable_image_path(output)
    check_writable_image_path(palette)
    as_palette = output is not None and len(ks) == 1 and output.suffix.lower() in PALETTE_FORMATS
    if rgb and output is not None and output.suffix.lower() == ".gif":
        raise typer.BadParameter("a GIF is always a palette image; write a .png for true colour", param_hint="--rgb")
    as_palette = as_palette and not rgb
    if as_palette and ks[0] > 256:
        raise typer.BadParameter("a palette image holds at most 256 colours; use --rgb or another format",
                                 param_hint="-k")
    original = read_image(image, alpha=True)
    results = quantize_sweep(original, ks, space=space, seed=seed, dither=dither)
    written = write_pictures(original, results, output, palette, as_palette)
    if json_output:
        print_json(as_json(image, original, space, seed, dither, results, written))
        return
    table = Table("k", "colours", "RGB MSE", "mean ΔE", "time")
    for r in results:
        table.add_row(str(r.k), str(len(r.quantization.shares)), f"{r.rgb_mse:.1f}", f"{r.mean_delta_e:.2f}",
                      f"{r.seconds * 1000:.0f} ms")
    stdout.print(table)
    for path, kind in written if not quiet else ():
        stderr.print(f"wrote {one_line(str(path))} ({os.path.getsize(path) / 1024:.1f} KiB, {kind})", markup=False)


def write_pictures(original, results, output, palette, as_palette):
    """The quantized image (a comparison sheet for several k) and the palette swatch, where asked for.
    Returns ``[(path, what it is)]``."""
    written = []
    if output is not None:
        if as_palette:
            q = results[0].quantization
            write_palette_image(output, q.labels, q.palette_colours)
            depth = 8 if output.suffix.lower() == ".gif" else palette_bit_depth(len(q.palette_rgb))
            written.append((output, f"{len(q.palette_rgb)}-colour palette, {depth} bits per pixel"))
        elif len(results) == 1:
            q = results[0].quantization
            keeps_alpha = q.image.shape[2] == 4 and output.suffix.lower() in (".png", ".tif", ".tiff", ".webp")
            write_image(output, q.image if keeps_alpha else over_white(q.image))
            written.append((output, "true colour"))
        else:
            captions = [([f"k={r.k}  MSE {r.rgb_mse:.1f}", f"mean dE {r.mean_delta_e:.2f}"],
                          over_white(r.quantization.image)) for r in results]
            write_image(output, comparison_sheet(over_white(original), captions))
            written.append((output, "comparison sheet"))
    if palette is not None:
        write_image(palette, np.vstack([palette_swatch(r.quantization.palette_rgb, r.quantization.shares)
                                        for r in results]))
        written.append((palette, "palette swatch"))
    return written


def as_json(image, original, space, seed, dither, results, written):
    return {
        "image": str(image),
        "width": original.shape[1],
        "height": original.shape[0],
        "alpha": original.shape[2] == 4,
        "space": space,
        "dither": dither,
        "seed": seed,
        "written": [{"path": str(path), "bytes": os.path.getsize(path), "kind": kind} for path, kind in written],
        "results": [
            {
                "k": r.k,
                "colors": len(r.quantization.shares),
                "palette": [palette_entry(c, s) for c, s in zip(r.quantization.palette_colours,
                                                                  r.quantization.shares)],
                "rgb_mse": round(r.rgb_mse, 4),
                "mean_delta_e": round(r.mean_delta_e, 4),
                "seconds": round(r.seconds, 4),
            }
            for r in results
        ],
    }


def palette_entry(colour, share):
    entry = {"hex": "#%02x%02x%02x" % tuple(int(v) for v in colour[:3]), "share": round(float(share), 6)}
    if len(colour) == 4:
        entry["alpha"] = int(colour[3])
    return entry
