"""``cbir query``: rank the indexed images for query images or a colour query."""

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from ..core.colour_query import describe, parse_target, rest_share
from ..viz.sheets import colour_query_swatch
from .options import DbOption, KernelOption, PowerOption, QuietOption, SigmaOption
from .output import (check_writable_image_path, one_line, print_json, relative_path, reports_errors, show_path,
                     stdout)
from .pictures import Query, write_result_pictures
from .progress import ProgressBar


MAX_PICTURED = 100  # results a query shows in --html and --montage


@reports_errors
def query_command(
    images: Annotated[Optional[list[Path]], typer.Argument(
        help="Query image files (none when querying by --color).", show_default=False)] = None,
    color: Annotated[Optional[list[str]], typer.Option(
        "--color", metavar="COLOUR[:PERCENT]",
        help="Query by colour, repeatable: a name (white), hex (#1e90ff), rgb(30,144,255) or lab(50,20,-30), "
             "with its percentage of the picture, e.g. --color '#1e90ff:40' --color white:20. Colours without a "
             "percentage share what is left; if the percentages add up to less than 100, the rest is any colour.",
        show_default=False)] = None,
    together: Annotated[bool, typer.Option(
        "--together", help="Rank once for all the query images and colours together (default: one ranking "
                           "each).")] = False,
    unlike: Annotated[Optional[list[Path]], typer.Option(
        "--not", metavar="IMAGE", help="An image the results should be unlike, repeatable.",
        show_default=False)] = None,
    unlike_color: Annotated[Optional[list[str]], typer.Option(
        "--not-color", metavar="COLOUR[:PERCENT]",
        help="Colours the results should be unlike, repeatable: one colour query, written as for --color.",
        show_default=False)] = None,
    db: DbOption = Path("cbir.db"),
    n: Annotated[int, typer.Option("-n", "--top", min=0, help="Results per query; 0 for the full ranking.")] = 10,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", help="Write the results as one self-contained web page (thumbnails, distances, colour "
                       "make-up).", show_default=False)] = None,
    montage: Annotated[Optional[Path], typer.Option(
        "--montage", help="Write the results as a captioned contact sheet image (.png or .jpg).",
        show_default=False)] = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object per query per line on stdout and nothing else.")] = False,
):
    """Rank the indexed images by colour similarity to each query image or colour query (QBIC quadratic-form
    distance). With --together, or with --not/--not-color, the examples make one query point that the ranking is
    by (distances are to that point)."""
    from ..index import Index

    if not images and not color:
        raise typer.BadParameter("give query image files, or colours with --color", param_hint="IMAGES")
    pictured = html is not None or montage is not None
    if pictured and n > MAX_PICTURED:
        too_many_to_picture()
    check_writable_image_path(montage)
    target = parse_target(color) if color else None
    ranking = {k: v for k, v in dict(kernel=kernel, sigma=sigma, power=power).items() if v is not None}
    show_progress = not (quiet or json_output)
    with Index.open(db, ranking=ranking) as index:
        if pictured and n == 0 and len(index) > MAX_PICTURED:
            too_many_to_picture()
        queries = make_queries(index, images or [], target, show_progress)
        negatives = [*(unlike or []), *([parse_target(unlike_color)] if unlike_color else [])]
        unlike_shown = [str(p) for p in unlike or []] + ([describe(negatives[-1])] if unlike_color else [])
        if together and len(queries) > 1:
            queries = [together_query(queries, unlike_shown)]
        if together or negatives:
            rankings = [index.search(q.examples, n, negative=negatives) for q in queries]
        else:
            rankings = index.search_vectors([q.vector for q in queries], n)
        for query, results in zip(queries, rankings):
            show_results(query, results, target, json_output, unlike_shown)
        if html is not None or montage is not None:
            write_result_pictures(index, queries, rankings, html, montage, show_progress, quiet or json_output)


def too_many_to_picture():
    raise typer.BadParameter(f"--html and --montage show at most {MAX_PICTURED} results a query (pictures of every "
                             "image of a large index would not fit in memory)", param_hint="-n")


def make_queries(index, images, target, show_progress):
    """The colour query (if any) and every query image, each read and checked before any output."""
    queries = []
    if target is not None:
        label = describe(target)
        swatch = colour_query_swatch([c.rgb for c in target], [c.share for c in target], rest_share(target))
        queries.append(Query(label, label, swatch, index.colour_vector(target), [target]))
    with ProgressBar("reading queries", show_progress and len(images) > 1) as progress:
        for done, image in enumerate(images, 1):
            queries.append(Query(image.name, str(image), image, index.query_vector(image), [image]))
            progress(done, len(images))
    return queries


def together_query(queries, unlike_shown):
    """One query standing for several, shown with the first one's picture and their mean colour make-up."""
    label = " + ".join(q.label for q in queries)
    title = label + (f", not {' / '.join(unlike_shown)}" if unlike_shown else "")
    return Query(label, title, queries[0].source, np.mean([q.vector for q in queries], axis=0),
                 [e for q in queries for e in q.examples])


def show_results(query, results, target, json_output, unlike_shown=()):
    if json_output:  # JSON escapes control characters itself; print_json escapes bytes that are not UTF-8
        document = {"query": query.title}
        if len(query.examples) > 1:
            document["examples"] = [str(e) if isinstance(e, Path) else describe(e) for e in query.examples]
        elif not isinstance(query.source, Path):  # the colour query
            document["colors"] = [{"color": c.spec, "hex": c.hex, "share": round(c.share, 6)} for c in target]
            document["any_color"] = round(rest_share(target), 6)
        if unlike_shown:
            document["not"] = list(unlike_shown)
        print_json({**document, "results": [{"rank": r.rank, "path": relative_path(r.path),
                                              "distance": round(r.distance, 6)} for r in results]})
        return
    shown = [(r.rank, r.distance, show_path(r.path)) for r in results]
    title = query.title + (f", not {' / '.join(unlike_shown)}" if unlike_shown and len(query.examples) == 1 else "")
    table = Table("rank", "distance", "path", title=Text(f"query: {one_line(title)}"), title_justify="left")
    for rank, distance, path in shown:
        table.add_row(str(rank), f"{distance:.4f}", Text(path))  # Text: a name is never read as rich markup
    stdout.print(table)
