"""Benchmark reports: the terminal summary, Markdown / HTML / CSV / JSON files and figures.

Everything is computed once (:func:`build_report`, module ``data``) and laid out as plain tables
(module ``tables``) that each renderer draws (module ``renderers``): rich in the terminal,
Markdown, self-contained HTML (inline CSS; the figures as ``<img>`` links to the SVGs beside
it), CSV and JSON. Figures (module ``plots``) come as PNG, SVG and PDF. Every report opens with
the protocol the rows ran under, the software versions and the meaning of every label.
:func:`print_report` draws it on a terminal and :func:`write_reports` (module ``files``) writes a
folder that holds one report of one set of rows, atomically file by file.
"""

from __future__ import annotations

from .contents import render_figures
from .data import ReportData, build_report, failure_summary, status_line
from .files import FILE_NAMES, FORMATS, MANIFEST, read_manifest, write_reports
from .plots import FIGURE_FORMATS, Figure
from .renderers import (
    print_report,
    render_csv,
    render_html,
    render_json,
    render_markdown,
    report_payload,
)
from .tables import Table, glossary, leaderboard_tables, verdict_label, verdict_tables

ACCURACY_PLOT = "accuracy_vs_sparsity.png"
EFFECTS_PLOT = "check_effects.png"
LAYER_DENSITY_PLOT = "layer_density.png"


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
    "print_report",
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
