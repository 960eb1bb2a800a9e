"""Benchmark reports: the terminal summary, Markdown / HTML / CSV / JSON files and figures.

Everything is computed once (:func:`build_report`, module ``data``) and laid out as plain tables
(module ``tables``) that each renderer draws (module ``renderers``): rich in the terminal,
Markdown, self-contained HTML (inline CSS; the figures as ``<img>`` links to the SVGs beside
it), CSV and JSON. Figures (module ``plots``) come as PNG, SVG and PDF. Every report opens with
the protocol the rows ran under, the software versions and the meaning of every label.
:func:`write_reports` (module ``files``) writes a folder that holds one report of one set of
rows, atomically file by file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import DEFAULT_CONFIDENCE, DEFAULT_TOLERANCE, SequentialDesign
from prunekit.bench.suite import Suite

from .data import ReportData, build_report, failure_summary, status_line
from .files import FILE_NAMES, FORMATS, MANIFEST, read_manifest, write_reports
from .plots import FIGURE_FORMATS, Figure, render_figures
from .renderers import render_csv, render_html, render_json, render_markdown, report_payload
from .tables import Table, glossary, leaderboard_tables, verdict_label, verdict_tables

ACCURACY_PLOT = "accuracy_vs_sparsity.png"
EFFECTS_PLOT = "check_effects.png"
LAYER_DENSITY_PLOT = "layer_density.png"


def print_terminal_report(
    rows: Sequence[ResultRow],
    console: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = 1000,
    seed: int = 0,
    design: SequentialDesign | None = None,
    suites: Sequence[Suite] = (),
) -> None:
    """The protocol, leaderboards (mean ± CI, rank interval, Δ vs the reference method, achieved
    sparsity), the verdict matrix, published numbers where they match, the verdict labels and
    one line on failed cells, on a rich console."""
    from .renderers import print_report

    data = build_report(
        rows, tolerance=tolerance, confidence=confidence, n_boot=n_boot, seed=seed, design=design,
        suites=suites,
    )  # fmt: skip
    print_report(data, console)


__all__ = [
    "ACCURACY_PLOT",
    "EFFECTS_PLOT",
    "FIGURE_FORMATS",
    "FILE_NAMES",
    "FORMATS",
    "LAYER_DENSITY_PLOT",
    "MANIFEST",
    "Figure",
    "ReportData",
    "Table",
    "build_report",
    "failure_summary",
    "glossary",
    "leaderboard_tables",
    "print_terminal_report",
    "read_manifest",
    "render_csv",
    "render_figures",
    "render_html",
    "render_json",
    "render_markdown",
    "report_payload",
    "status_line",
    "verdict_label",
    "verdict_tables",
    "write_reports",
]
