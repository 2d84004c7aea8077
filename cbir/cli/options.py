"""Options shared by several commands, defined once (with the names of their values, and checks that make a bad
value a usage error, exit code 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from ..core.colour import SPACES
from ..core.histogram import LAYOUTS
from ..core.qfd import KERNELS
from .output import FORMATS


def _positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be more than 0, got {value:g}")
    return value


def _share_power(value: float | None) -> float | None:
    if value is not None and not 0 < value <= 1:
        raise typer.BadParameter(f"must be more than 0 and at most 1, got {value:g}")
    return value


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
DbOption = Annotated[Path, typer.Option("--db", envvar="CBIR_DB", metavar="FILE", help="Index database file.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or hints on stderr.")]
FormatOption = Annotated[Optional[Literal[FORMATS]], typer.Option(
    "--format", show_default=False,
    help="Output: table (on a terminal, the default), tsv (the default when stdout is a pipe or a file), csv, "
         "json, or paths (one path per line, for xargs).")]

# The k-means of cbir quantize.
SpaceOption = Annotated[Literal[SPACES], typer.Option("--space", help="Colour space of the k-means: lab (CIELAB) "
                                                                      "or rgb.")]
SeedOption = Annotated[int, typer.Option("--seed", metavar="N", min=0, help="Seed of the k-means++ initialisation.")]

# The settings of an index (cbir index, cbir evaluate); None leaves a setting as it is (or at its default).
CodebookSizeOption = Annotated[Optional[int], typer.Option(
    "--codebook-size", metavar="K", min=2, max=1024, help="Colours in the codebook (default 128).")]
LayoutOption = Annotated[Optional[Literal[LAYOUTS]], typer.Option(
    "--layout", help="Spatial layout of the histogram blocks (default global+3x3).")]
CodebookSpaceOption = Annotated[Optional[Literal[SPACES]], typer.Option(
    "--space", help="Colour space of the codebook (default lab).")]
MinSideOption = Annotated[Optional[int], typer.Option(
    "--min-side", metavar="PIXELS", min=0,
    help="Decode JPEGs reduced while the short side keeps this many pixels; 0: in full (default 384).")]
SampleOption = Annotated[Optional[int], typer.Option(
    "--sample", metavar="N", min=1, help="Images sampled to learn the codebook (default 1000).")]
KernelOption = Annotated[Optional[Literal[KERNELS]], typer.Option(
    "--kernel", help="Similarity kernel of the quadratic form: qbic (1 - d/dmax) or gaussian (the default).")]
SigmaOption = Annotated[Optional[float], typer.Option(
    "--sigma", metavar="X", callback=_positive,
    help="Sharpness of the gaussian kernel exp(-sigma (d/dmax)^2): larger means narrower (default 400).")]
PowerOption = Annotated[Optional[float], typer.Option(
    "--power", metavar="P", callback=_share_power,
    help="Raise shares to this power before comparing, 0 < P <= 1 (default 1/3).")]
