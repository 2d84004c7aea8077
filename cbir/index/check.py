"""Integrity and consistency of an index database: what :meth:`cbir.Index.check` reports.

Read only: nothing is repaired (adding photos again brings an index in step with disk; a rebuild redoes it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..core.histogram import LUT_BITS, n_blocks
from ..errors import CbirError, Remedy
from ..settings import Settings
from ..store import Store, integrity_check
from . import search_cache, vector_index

LISTED = 20  # paths shown per problem


@dataclass
class Finding:
    """One check: its name, whether it passed, a one-line detail, up to LISTED example paths or ids, and what
    fixes it when it failed (or None)."""

    name: str
    ok: bool
    detail: str
    items: list = field(default_factory=list)
    remedy: Remedy | None = None


@dataclass
class CheckReport:
    """All findings on one database; ``ok`` when every check passed (warnings do not count)."""

    database: str
    usable: bool = True
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.usable and all(f.ok for f in self.findings)

    def add(self, name: str, ok: bool, detail: str, items: Any = (), remedy: Remedy | None = None) -> None:
        self.findings.append(Finding(name, ok, detail, list(items)[:LISTED], None if ok else remedy))

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "ok": self.ok,
            "usable": self.usable,
            "counts": self.counts,
            "checks": [{"name": f.name, "ok": f.ok, "detail": f.detail, "items": f.items} for f in self.findings],
            "warnings": self.warnings,
        }


def check_database(path: str, *, files: bool = True) -> CheckReport:
    """Check the index database at ``path``.

    Never raises for a damaged, foreign or missing database: that is a finding (``usable`` False).

    Parameters
    ----------
    path : database file
    files : also stat every indexed file (missing files are problems, changed ones warnings)

    Returns
    -------
    CheckReport
    """
    report = CheckReport(os.fspath(path))
    try:
        store = Store.open(path)
    except CbirError as error:
        report.usable = False
        integrity = integrity_check(path) if os.path.isfile(path) else None
        if integrity is not None and integrity != ["ok"]:
            _add_integrity(report, integrity)
        report.add("open", False, error.problem, remedy=error.remedy)
        return report
    with store:
        try:
            _check(store, report, files)
        except CbirError as error:  # a read failed half-way: the database cannot be relied on
            report.usable = False
            report.add("read", False, error.problem, remedy=error.remedy)
    return report


def _check(store, report, files):
    integrity = store.integrity()
    _add_integrity(report, integrity)
    if integrity != ["ok"]:
        report.usable = False
        return  # the other checks would read a damaged file
    with store.snapshot():
        report.counts = store.counts()
        dimension = _check_codebook(store, report)
        found = store.consistency(dimension, limit=LISTED)
        image_files = store.image_files() if files else []
    if store.rebuild_left_behind():
        report.warnings.append("tables of a rebuild that stopped are in the file (the index is as it was before it); "
                               "the next index run drops them")
    counts = report.counts
    report.add("histogram_count", counts["histograms"] <= counts["images"],
               f"{counts['images']} images, {counts['histograms']} histograms")
    if found["images_without_histogram"]:  # what an interrupted rebuild leaves; any index run computes them
        report.warnings.append(f"{counts['images'] - counts['histograms']} images have no histogram yet (an "
                               "interrupted rebuild?); the next index run computes them, wherever they are")
    for name, what in [("orphan_histograms", "histograms without an image"),
                       ("indexed_and_failed", "paths both indexed and listed as failed"),
                       ("paths_not_text", "image paths that are not text"),
                       ("other_codebook", "histograms made with another codebook than the current one (a writer "
                                          "that bypassed the lock: the next index run makes them again)")]:
        report.add(name, not found[name], f"{len(found[name])}{'+' if len(found[name]) >= LISTED else ''} {what}"
                   if found[name] else f"no {what}", found[name])
    if dimension is not None:
        report.add("histogram_blobs", not found["bad_blob_size"] and not found["bad_values"],
                   f"every histogram is {dimension} shares" if not
                   (found["bad_blob_size"] or found["bad_values"]) else
                   f"{len(found['bad_blob_size'])} of the wrong size or type, {len(found['bad_values'])} "
                   "with negative, NaN or infinite values", found["bad_blob_size"] + found["bad_values"])
    bad, without = found["bad_structure_thumbnails"], found["images_without_structure"]
    detail = (f"{len(bad)} without an image or of the wrong size" if bad else
              "every structure thumbnail is 256 bytes of an indexed image")
    if without:  # an index made before cbir kept them: not damage
        detail += (f"; {len(without)}{'+' if len(without) >= LISTED else ''} images have none yet (the next index run "
                   "adds them)")
    report.add("structure_thumbnails", not bad, detail, bad, remedy=Remedy.REBUILD_IF_DAMAGED)
    if dimension is not None and not found["bad_blob_size"] and not found["bad_values"]:
        differences = search_cache.differences(store)
        if differences is not None:
            report.add("search_cache", differences == 0, "the search cache equals the histograms transformed again"
                       if not differences else f"the search cache differs from the histograms in {differences} rows",
                       remedy=Remedy.REBUILD)
        try:
            differences = vector_index.differences(store)
        except ImportError:  # usearch is not installed: nothing here can read the file
            differences = None
        if differences is not None:
            report.add("vector_index", differences == 0, "the vector index holds exactly the indexed images"
                       if not differences else f"the vector index and the database differ in {differences} images",
                       remedy=Remedy.REBUILD)
    if files:
        missing, changed = [], []
        for stored, size, mtime_ns in image_files:
            try:
                stat = os.stat(store.disk_path(stored))
            except OSError:
                missing.append(stored)
                continue
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
                changed.append(stored)
        report.add("files", not missing, f"{len(missing)} indexed files are missing on disk" if missing else
                   "every indexed file exists", missing, remedy=Remedy.REINDEX)
        if changed:
            report.warnings.append(f"{len(changed)} indexed files changed since they were indexed (indexing their "
                                   "folders again updates them)")


def _add_integrity(report, messages):
    lines = [line for message in messages for line in message.splitlines() if not line.startswith("***")]
    if messages == ["ok"]:
        report.add("integrity", True, "PRAGMA integrity_check: ok")
    else:
        report.add("integrity", False, f"PRAGMA integrity_check: {len(lines)} problems, e.g. {lines[0]}", lines)


def _check_codebook(store, report):
    """Codebook present, numbered, finite and of the size the stored settings say; returns the number of float32
    values of a histogram, or None when it cannot be known."""
    try:
        codebook = store.codebook()
        store.codebook_rows()  # hex colours and shares checked too: queries by colour and palettes use them
        meta = store.meta()
        settings = Settings.from_dict(meta["settings"]) if "settings" in meta else None
    except CbirError as error:
        report.add("codebook", False, error.problem, remedy=error.remedy)
        return None
    if codebook is None or settings is None:
        empty = report.counts["images"] == 0 and report.counts["histograms"] == 0
        report.add("codebook", empty, "no codebook yet (nothing indexed)" if empty else
                   "histograms are stored but the codebook or its settings are missing", remedy=Remedy.REBUILD)
        return None
    if len(codebook) > settings.colors or len(codebook) < 1:
        report.add("codebook", False, f"{len(codebook)} codebook colours for colors={settings.colors}",
                   remedy=Remedy.REBUILD)
        return None
    if meta.get("lut_bits") != LUT_BITS:
        report.add("codebook", False, f"made with a {meta.get('lut_bits')}-bit colour table, this cbir uses "
                   f"{LUT_BITS} bits", remedy=Remedy.REBUILD)
        return n_blocks(settings.layout) * len(codebook)  # the histograms can still be checked
    report.add("codebook", True, f"{len(codebook)} colours (colors={settings.colors}), "
               f"space={settings.space}, layout={settings.layout}")
    return n_blocks(settings.layout) * len(codebook)
