"""``cbir duplicates``: groups of copies among the indexed photos, in tiers, with a suggested keeper. Reads only."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..files import write_text
from ..imageio import encode_image
from ..viz.page import Group, Picture, groups_page
from .options import DbOption, FormatOption, QuietOption
from .output import (chosen_format, print_json, relative_path, reports_errors, show_path, stderr, stdout,
                     write_rows)
from .pictures import THUMBNAIL, load_thumbnail
from .progress import ProgressBar

HTML_GROUPS = 300  # groups drawn on a page at most: thumbnails make a page of thousands of groups unusable


COLUMNS = ("group", "tier", "kind", "role", "relation", "symmetry", "distance", "colour_distance",
           "structure_distance", "width", "height", "bytes", "modified", "path")


@reports_errors
def duplicates_command(
    db: DbOption = Path("cbir.db"),
    tier: Annotated[int, typer.Option(
        "--tier", min=1, max=3,
        help="The loosest tier to report: 1 identical files; 2 also the same photo saved again (resized, "
             "recompressed, converted, rotated, mirrored); 3 also near-duplicates (bursts, light crops, small "
             "edits).")] = 3,
    threshold: Annotated[float, typer.Option(
        "--threshold", max=4.0,
        help="How near a near-duplicate (tier 3) must be: 1 is the calibrated default, 0.5 stricter, 1.5 looser.")
    ] = 1.0,
    format_name: FormatOption = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Same as --format json: one JSON document with the groups and the pairs that join them.")
    ] = False,
    html: Annotated[Optional[Path], typer.Option(
        "--html", help="Also write the groups side by side as one self-contained web page.",
        show_default=False)] = None,
    quiet: QuietOption = False,
):
    """Find copies among the indexed photos: identical files, the same photo saved again, and near-duplicates,
    each group with a suggested keeper (most pixels, then the largest file, then the oldest). Never deletes or
    moves a file. --format paths prints the copies: every file but each group's keeper."""
    from ..index import Index

    if not threshold > 0:
        raise typer.BadParameter(f"{threshold} is not more than 0", param_hint="--threshold")
    output_format = chosen_format(format_name, json_output)
    show_progress = not quiet  # on stderr, when it is a terminal
    with Index.open(db) as index:
        with ProgressBar("comparing", show_progress) as progress:
            report = index.duplicates(tier=tier, threshold=threshold, progress=progress)
        if report.without_structure and not quiet:
            stderr.print(f"{report.without_structure} images were indexed before cbir kept structure thumbnails: "
                         "they are compared as identical files only; run cbir index on their folders (again) to "
                         "add them", markup=False, soft_wrap=True)
        render(report, output_format, index.path)
        if html is not None:
            write_page(index, report, html, show_progress)
            if not quiet:
                stderr.print(f"wrote {html}", markup=False)


def render(report, output_format, database):
    """The report on stdout in the format asked for (formats as every command has them: cbir.cli.output)."""
    if output_format == "json":
        print_json(document(report, database))
    elif output_format == "paths":
        write_rows("paths", ["path"], [[show_path(m.path)] for g in report.groups for m in g.members[1:]])
    elif output_format == "table":
        show_table(report)
    else:
        write_rows(output_format, list(COLUMNS), [
            [number, group.tier, group.label, "keeper" if k == 0 else "copy", relation(m), m.symmetry,
             number_or_blank(m.distance), number_or_blank(m.colour_distance), number_or_blank(m.structure_distance),
             m.width, m.height, m.size, modified(m.mtime_ns), show_path(m.path)]
            for number, group in enumerate(report.groups, 1) for k, m in enumerate(group.members)])


def relation(member):
    return member.relation_label


def number_or_blank(value):
    return "" if value is None else f"{value:.4f}"


def modified(mtime_ns):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(mtime_ns / 1e9)) if mtime_ns else ""


def member_document(member, role):
    return {"role": role, "relation": relation(member), "symmetry": member.symmetry,
            "distance": rounded(member.distance), "colour_distance": rounded(member.colour_distance),
            "structure_distance": rounded(member.structure_distance), "width": member.width,
            "height": member.height, "bytes": member.size, "modified": modified(member.mtime_ns),
            "image_id": member.image_id, "path": relative_path(member.path)}


def rounded(value):
    return None if value is None else round(value, 4)


def document(report, database):
    return {"database": database, "images": report.images, "tier": report.tier, "threshold": report.threshold,
            "without_structure": report.without_structure, "pairs_measured": report.pairs_measured,
            "seconds": round(report.seconds, 3),
            "groups": [{"tier": g.tier, "kind": g.label, "why": g.why,
                        "members": [member_document(m, "keeper" if k == 0 else "copy")
                                    for k, m in enumerate(g.members)]} for g in report.groups],
            "pairs": [{"path": relative_path(p.path), "other": relative_path(p.other), "tier": p.tier,
                       "distance": round(p.distance, 4)} for p in report.pairs]}


def show_table(report):
    """Groups as aligned plain lines, one file a line, the path last and never cut (paths are the result). Not
    write_rows' table: its columns left a path a few characters wide in an 80-column terminal."""
    if not report.groups:
        stdout.print(f"No duplicates among {report.images} images.", markup=False)
        return
    described = [[(("keep" if k == 0 else relation(m) + ("" if m.symmetry == "as is" else f", {m.symmetry}")),
                    "" if m.distance is None or k == 0 else f"{m.distance:.3f}", f"{m.width}x{m.height}",
                    human_size(m.size), show_path(m.path)) for k, m in enumerate(g.members)] for g in report.groups]
    widths = [max(len(row[c]) for rows in described for row in rows) for c in range(4)]
    for number, (group, rows) in enumerate(zip(report.groups, described), 1):
        stdout.print(f"group {number}: {group.label} (tier {group.tier}), {len(group.members)} files; keep the first: "
                     f"{group.why}", markup=False)
        for row in rows:
            stdout.print("  " + "  ".join(text.ljust(width) if c == 0 else text.rjust(width)
                                          for c, (text, width) in enumerate(zip(row[:4], widths))) + "  " + row[4],
                         markup=False)
    counts = {t: sum(g.tier == t for g in report.groups) for t in (1, 2, 3)}
    stdout.print(f"{len(report.groups)} group{'s' * (len(report.groups) != 1)} among {report.images} images: " +
                 ", ".join(f"{counts[t]} of tier {t}" for t in (1, 2, 3) if t <= report.tier), markup=False)


def human_size(size):
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def write_page(index, report, html, show_progress):
    """The groups side by side, thumbnails read from the files (at most HTML_GROUPS groups)."""
    groups = report.groups[:HTML_GROUPS]
    palette, _ = index.codebook_colours()
    hexes = ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in palette]
    total = sum(len(g.members) for g in groups)
    done = 0
    shown = []
    with ProgressBar("thumbnails", show_progress) as progress:
        for number, group in enumerate(groups, 1):
            makeups = index.colour_makeup(index.histograms([m.image_id for m in group.members]))
            pictures = []
            for k, (member, makeup) in enumerate(zip(group.members, makeups)):
                image, note = load_thumbnail(member.path, THUMBNAIL)
                lines = ["keep: " + group.why if k == 0 else f"{relation(member)}, {member.symmetry}",
                         f"{member.width}x{member.height}, {human_size(member.size)}, "
                         f"{modified(member.mtime_ns).replace('T', ' ')[:16]}"]
                if member.distance is not None and k:
                    lines.append(f"distance {member.distance:.3f} (colour {member.colour_distance:.3f}, "
                                 f"structure {member.structure_distance:.3f})")
                pictures.append(Picture(os.path.basename(member.stored_path), show_path(member.path),
                                        encode_image(image, ".jpg"), "image/jpeg",
                                        sorted(((h, float(s)) for h, s in zip(hexes, makeup) if s > 0),
                                               key=lambda c: -c[1]), note=note, lines=tuple(lines)))
                done += 1
                progress(done, total)
            shown.append(Group(f"Group {number}: {group.label} (tier {group.tier}), {len(group.members)} files",
                               f"The first is the suggested keeper: {group.why}.", pictures))
    meta = (f"{report.images} images in {index.path}; tiers 1-{report.tier}, threshold {report.threshold:g}; "
            f"{len(report.groups)} groups" + (f", the first {HTML_GROUPS} shown" if len(report.groups) > HTML_GROUPS
                                              else "") + ". cbir never deletes or moves a file.")
    write_text(html, groups_page(shown, "cbir duplicates", meta))
