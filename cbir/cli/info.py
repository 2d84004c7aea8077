"""``cbir info``: what an index database holds."""

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..imageio import write_image
from ..viz.sheets import palette_swatch
from .options import DbOption, JsonOption
from .output import check_writable_image_path, one_line, print_json, reports_errors, stderr, stdout


@reports_errors
def info_command(
    db: DbOption = Path("cbir.db"),
    palette: Annotated[Optional[Path], typer.Option(
        "--palette", metavar="FILE", help="Write the codebook as a swatch image, colours sized by their share of the collection.",
        show_default=False)] = None,
    json_output: JsonOption = False,
):
    """Show what an index database holds: images, failures, codebook and its settings, size."""
    from ..index import Index

    check_writable_image_path(palette)
    with Index.open(db) as index:
        info = index.info()
        failures = index.failures()
        if palette is not None:
            write_image(palette, palette_swatch(*index.codebook_colours(), 800, 64))
            if not json_output:
                stderr.print(f"wrote {one_line(str(palette))}", markup=False)
    if json_output:
        info["failure_list"] = [{"path": f.stored_path, "reason": f.reason} for f in failures]
        print_json(info)
        return
    stdout.print(f"database: {one_line(info['database'])} ({info['bytes'] / 1e6:.1f} MB, schema {info['schema_version']})",
                 markup=False)
    stdout.print(f"images: {info['images']} indexed, {info['failures']} failed", markup=False)
    for failure in failures:
        stdout.print(f"  failed: {one_line(failure.stored_path)}: {one_line(failure.reason)}", markup=False)
    if info["pending"]:
        stdout.print(f"  {info['pending']} awaiting a histogram (an interrupted rebuild): any cbir index run computes "
                     "them", markup=False)
    learned = ""
    if info["codebook_images"] is not None:
        when = time.strftime("%Y-%m-%d", time.localtime(info["codebook_learned_at"])) \
            if isinstance(info["codebook_learned_at"], (int, float)) else "an unknown date"
        learned = f", learned from {info['codebook_images']} images on {when}"
    elif info["codebook"]:
        learned = " (how many images it was learned from is not recorded: made by an older cbir)"
    stdout.print(f"codebook: {info['codebook'] and len(info['codebook'])} colours{learned}", markup=False)
    for key, value in (info["settings"] or {}).items():
        stdout.print(f"  {one_line(str(key))}: {one_line(str(value))}", markup=False)
    if info["search_cache_rows"] is not None:
        stdout.print(f"search cache: {info['search_cache_rows']} transformed rows (opening reads them)", markup=False)
    if info["vector_index_rows"] is not None:
        state = ("queries take candidates from it" if info["vector_index_current"] else
                 "out of date: queries read every histogram until `cbir index` brings it up to date")
        stdout.print(f"vector index: {info['vector_index_rows']} images ({state})", markup=False)
