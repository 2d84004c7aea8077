"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")]
SpaceOption = Annotated[str, typer.Option("--space", help="Colour space of the k-means: lab (CIELAB) or rgb.")]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Seed of the k-means++ initialisation.")]
DbOption = Annotated[
    Path, typer.Option("--db", envvar="CBIR_DB", help="Index database file (default ./cbir.db, or $CBIR_DB).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or hints on stderr.")]
KernelOption = Annotated[
    Optional[str], typer.Option("--kernel", help="Similarity kernel of A: qbic (1 - d/dmax) or gaussian.")
]
SigmaOption = Annotated[Optional[float], typer.Option(
    "--sigma", help="Sharpness of the gaussian kernel exp(-sigma (d/dmax)^2): larger means narrower.")]
PowerOption = Annotated[
    Optional[float], typer.Option("--power", help="Raise shares to this power before comparing (0 < p <= 1).")
]
