"""``cbir query``: rank the indexed images for query images or a colour query."""

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..core.colour_query import SIMILAR, describe, parse_target, rest_share
from ..errors import ColourError
from ..files import check_writable
from .options import DbOption, FormatOption, KernelOption, PowerOption, QuietOption, SigmaOption
from .output import (check_writable_image_path, chosen_format, message, one_line, print_json, relative_path,
                     reports_errors, show_path, stderr, write_rows)
from .pictures import PAGE_LIMIT, Query, write_result_pictures
from .progress import ProgressBar


@reports_errors
def query_command(
    images: Annotated[Optional[list[Path]], typer.Argument(
        metavar="IMAGE", help="Query image files (none when querying by --color).", show_default=False)] = None,
    color: Annotated[Optional[list[str]], typer.Option(
        "--color", metavar="COLOUR[:PERCENT]",
        help="Query by colour, repeatable: a name (white), hex (#1e90ff), rgb(30,144,255) or lab(50,20,-30), "
             "with the least share of the picture it should cover, e.g. --color '#1e90ff:40' --color white:20 "
             "(colours within CIE76 ΔE 25 count). Colours without a percentage share what is left; the rest of the "
             "picture may be any colour. Ranked by the share missing (0: every colour is there).",
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
    n: Annotated[int, typer.Option("-n", "--top", metavar="N", min=0,
                                   help="Results per query; 0 for the full ranking.")] = 10,
    skip_self: Annotated[bool, typer.Option(
        "--skip-self/--keep-self", help="Leave a query file that is itself indexed out of its own results.")] = True,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    html: Annotated[Optional[Path], typer.Option(
        "--html", metavar="FILE", help=f"Write the results as one self-contained web page (thumbnails, distances, colour make-up; "
                       f"at most {PAGE_LIMIT} results per query).", show_default=False)] = None,
    montage: Annotated[Optional[Path], typer.Option(
        "--montage", metavar="FILE", help=f"Write the results as a captioned contact sheet image (.png or .jpg; at most "
                          f"{PAGE_LIMIT} results per query).", show_default=False)] = None,
    absolute_paths: Annotated[bool, typer.Option(
        "--absolute-paths", help="In the --html page, link and name files by their absolute paths (by default "
                                 "relative to the page, so a page passed on does not tell where your files are).")
    ] = False,
    format_name: FormatOption = None,
    quiet: QuietOption = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Same as --format json: one JSON object per query per line on stdout.")] = False,
):
    """Rank the indexed images by colour similarity to each query image (QBIC quadratic-form distance), or by how
    much of the requested colours they have (--color). With --together, or with --not/--not-color, the examples
    make one query point that the ranking is by (distances are to that point)."""
    from ..index import Index

    if not images and not color:
        raise typer.BadParameter("give query image files, or colours with --color", param_hint="IMAGES")
    output = chosen_format(format_name, json_output)
    if html is not None:  # every output is checked before the work
        check_writable(html)
    check_writable_image_path(montage)
    target, unlike_target = colours_given(color, "--color"), colours_given(unlike_color, "--not-color")
    ranking = {k: v for k, v in dict(kernel=kernel, sigma=sigma, power=power).items() if v is not None}
    show_progress = not (quiet or output == "json")
    with Index.open(db, ranking=ranking) as index:
        matches = index.colour_matches(target) if target is not None else []
        for match in matches:
            if match.delta_e > SIMILAR and not (quiet or output == "json"):  # JSON has it in "colors"
                stderr.print(f"note: {match.colour.spec.rpartition(':')[0] or match.colour.spec} is matched as "
                             f"{match.nearest}, ΔE {match.delta_e:.0f} (the nearest colour of this index's codebook)",
                             markup=False)
        queries = make_queries(index, images or [], target, show_progress)
        negatives = [*(unlike or []), *([unlike_target] if unlike_target else [])]
        unlike_shown = [str(p) for p in unlike or []] + ([describe(unlike_target)] if unlike_target else [])
        if together and len(queries) > 1:
            queries = [together_query(queries, unlike_shown)]
        if together or negatives:  # one query point: ranked by the quadratic form, colours included
            queries = [dataclasses.replace(q, colours=()) for q in queries]
            rankings = [index.search(q.examples, n, negative=negatives) for q in queries]
        else:
            rankings = [index.search_colours(q.colours, n) for q in queries if q.colours]
            pictures = [q for q in queries if not q.colours]
            exclude = [(own,) if skip_self and (own := index.image_id(q.source)) is not None else ()
                       for q in pictures]
            rankings += index.search_vectors([q.vector for q in pictures], n, exclude=exclude) if pictures else []
        show_results(queries, rankings, matches, output, unlike_shown)
        if html is not None or montage is not None:
            if not quiet and any(len(r) > PAGE_LIMIT for r in rankings):
                stderr.print(f"note: the pictures show the first {PAGE_LIMIT} results of each query", markup=False)
            write_result_pictures(index, queries, [r[:PAGE_LIMIT] for r in rankings], html, montage, show_progress,
                                  quiet or output == "json", absolute_paths)


def colours_given(specs, option):
    """A colour query from an option's items, or None; a colour that cannot be read is a usage error."""
    try:
        return parse_target(specs) if specs else None
    except ColourError as error:
        raise typer.BadParameter(message(error), param_hint=option) from None


def make_queries(index, images, target, show_progress):
    """The colour query (if any) and every query image, each read and checked before any output."""
    queries = [Query.of_colours(target, index.colour_vector(target))] if target is not None else []
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


def show_results(queries, rankings, matches, output, unlike_shown=()):
    """The rankings on stdout in the chosen format; ``matches``: the colour query's codebook matches."""
    for number, (query, results) in enumerate(zip(queries, rankings)):
        title = query.title + (f", not {' / '.join(unlike_shown)}" if unlike_shown and len(query.examples) == 1
                               else "")
        if output == "json":
            document = {"query": query.title}
            if len(query.examples) > 1:
                document["examples"] = [str(e) if isinstance(e, Path) else describe(e) for e in query.examples]
            elif not isinstance(query.source, Path):  # the colour query
                document["colors"] = [{"color": m.colour.spec, "hex": m.colour.hex, "share": round(m.colour.share, 6),
                                       "nearest": m.nearest, "delta_e": round(m.delta_e, 2)} for m in matches]
                document["any_color"] = round(rest_share(query.examples[0]), 6)
            if unlike_shown:
                document["not"] = list(unlike_shown)
            print_json({**document, "results": [
                {"rank": r.rank, "path": relative_path(r.path), "distance": round(r.distance, 6),
                 **({"found": [round(f, 6) for f in r.found]} if query.colours else {})} for r in results]})
            continue
        rows = [[r.rank, f"{r.distance:.4f}", show_path(r.path)] for r in results]
        if output == "table":
            heading = "missing" if query.colours else "distance"
            write_rows(output, ["rank", heading, "path"], rows, title=f"query: {one_line(title)}")
        else:
            write_rows(output, ["query", "rank", "distance", "path"], [[one_line(title), *row] for row in rows],
                       header=number == 0)
