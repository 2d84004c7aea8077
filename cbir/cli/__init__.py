"""The ``cbir`` command line (typer): a thin face on :class:`cbir.Index` and the numeric core."""

from .app import app, main

__all__ = ["app", "main"]
