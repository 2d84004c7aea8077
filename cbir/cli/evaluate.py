"""``cbir evaluate``: measure retrieval on a labelled folder."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .options import (CodebookSizeOption, CodebookSpaceOption, JsonOption, KernelOption, LayoutOption, MinSideOption,
                      PowerOption, QuietOption, SampleOption, SigmaOption)
from .output import print_json, reports_errors, show_path, stderr, stdout
from .progress import ProgressBar


@reports_errors
def evaluate_command(
    directory: Annotated[Path, typer.Argument(metavar="DIRECTORY", help="Folder of the labelled images.",
                                              show_default=False)],
    labels: Annotated[Path, typer.Option("--labels", metavar="CSV", help="CSV file with columns path,label (paths relative to "
                                                          "DIRECTORY).", show_default=False)],
    db: Annotated[Optional[Path], typer.Option(
        "--db", metavar="FILE", help="Index database to use and keep (default: a temporary one).")] = None,
    colors: CodebookSizeOption = None,
    layout: LayoutOption = None,
    space: CodebookSpaceOption = None,
    min_side: MinSideOption = None,
    sample: SampleOption = None,
    seed: Annotated[Optional[int], typer.Option("--seed", metavar="N", min=0, help="Seed of the codebook k-means.")] = None,
    kernel: KernelOption = None,
    sigma: SigmaOption = None,
    power: PowerOption = None,
    distance: Annotated[Optional[list[str]], typer.Option(
        "--distance", metavar="NAME", help="qfd (default), l1, chi2, intersection, or all; repeat for several.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="With --db: relearn the codebook, redo every "
                                                            "histogram.")] = False,
    feedback: Annotated[int, typer.Option(
        "--feedback", min=0, metavar="ROUNDS",
        help="Rounds of simulated relevance feedback: each round the user judges the first --judged results "
             "(the query excluded) and the query is ranked again with every judgement so far (qfd only).")] = 0,
    judged: Annotated[int, typer.Option("--judged", min=1, help="Results judged per feedback round.")] = 20,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
):
    """Measure retrieval on a labelled folder: every labelled image queries all the others (same label =
    relevant); prints MAP, P@10, P@20, AP per label and timings."""
    from ..core.backends import DISTANCES
    from ..experiments.evaluate import run_experiment

    distances = list(dict.fromkeys(d for name in (distance or ["qfd"])
                                   for d in (DISTANCES if name == "all" else [name])))
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: choose from {', '.join(DISTANCES)} or all",
                                 param_hint="--distance")
    if feedback and distances != ["qfd"]:
        raise typer.BadParameter("relevance feedback ranks by the quadratic form only: use --distance qfd",
                                 param_hint="--feedback")
    settings = dict(colors=colors, layout=layout, space=space, min_side=min_side, sample=sample, seed=seed,
                    kernel=kernel, sigma=sigma, power=power)
    with ProgressBar("indexing", not (quiet or json_output)) as bar:
        report = run_experiment(directory, labels, db=db, settings=settings, distances=distances, rebuild=rebuild,
                                feedback=feedback, judged=judged, index_progress=bar.stage("indexing"),
                                query_progress=bar.stage("ranking"))
    if json_output:
        print_json(report)
    else:
        show_report(report)


def show_report(report):
    for failure in report["failed"]:
        stderr.print(f"failed: {show_path(failure['path'])}: {failure['reason']}", markup=False, soft_wrap=True)
    results = report["results"]
    stdout.print(f"{report['images']} labelled images, {report['labels']} labels; indexed {report['indexed']}"
                 + (f" in {report['index_seconds'] * 1000:.1f} ms per image" if report["index_seconds"] else ""),
                 markup=False)
    stdout.print("settings: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in report["settings"].items()), markup=False)
    table = Table("distance", "MAP", "P@10", "P@20", "N-S", "query time")
    for r in results:
        table.add_row(r["distance"], f"{r['map']:.4f}", f"{r['p@10']:.4f}", f"{r['p@20']:.4f}", f"{r['ns']:.3f}",
                      f"{r['query_seconds'] * 1000:.2f} ms")
    stdout.print(table)
    for r in results:
        if "feedback" in r:
            show_feedback(r)
    per_label = Table("label", *[f"AP {r['distance']}" for r in results], title="AP per label",
                      title_justify="left")
    for label in results[0]["ap_per_label"]:
        per_label.add_row(label, *[f"{r['ap_per_label'][label]:.4f}" for r in results])
    stdout.print(per_label)


def show_feedback(result):
    rounds = Table("round", "MAP", "P@10", "P@20", "N-S", "MAP (res.)", "P@10 (res.)", "P@20 (res.)",
                   "queries (res.)",
                   title=f"relevance feedback ({result['distance']}, {result['judged']} results judged per round): "
                         "full ranking (query excluded) | residual collection (judged images removed too)",
                   title_justify="left")
    rounds.add_row("0", f"{result['map']:.4f}", f"{result['p@10']:.4f}", f"{result['p@20']:.4f}",
                   f"{result['ns']:.3f}", "", "", "", "")
    for number, r in enumerate(result["feedback"], 1):
        left = r.get("residual", {})
        rounds.add_row(str(number), f"{r['map']:.4f}", f"{r['p@10']:.4f}", f"{r['p@20']:.4f}", f"{r['ns']:.3f}",
                       *([f"{left['map']:.4f}", f"{left['p@10']:.4f}", f"{left['p@20']:.4f}", str(left["queries"])]
                         if left else ["-"] * 4))
    stdout.print(rounds)
