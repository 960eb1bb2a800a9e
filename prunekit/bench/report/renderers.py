"""Renderers: the terminal (rich), Markdown, self-contained HTML, CSV and JSON.

People's formats (terminal, Markdown, HTML) show percent; the machine formats (CSV, JSON) hold
fractions in [0, 1] and say so (``report.json``'s ``units``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import attrs

from prunekit.bench.stats import ACCURACY_POINTS

from .contents import sections
from .data import (
    ACCURACY_BOUNDS,
    DELTA_BOUNDS,
    UNITS,
    ReportData,
    clip,
    effect_bounds,
    failure_summary,
    status_line,
)
from .plots import FIGURE_FORMATS, Figure
from .tables import (
    UNITS_LINE,
    VERDICT_COLOURS,
    VERDICT_STYLES,
    Table,
    diverged_table,
    glossary,
    leaderboard_tables,
    protocol_tables,
    published_table,
    settings_line,
    verdict_key,
    verdict_rules,
    verdict_tables,
)

TITLE = "prunekit benchmark report"
CSV_COLUMNS = (
    "key",
    "suite",
    "bench_id",
    "model",
    "dataset",
    "method",
    "check",
    "sparsity",
    "seed",
    "protocol",
    "status",
    "final_accuracy",
    "best_accuracy",
    "final_loss",
    "achieved_sparsity",
    "effective_sparsity",
    "dense_accuracy",
    "tie_fraction",
    "mask_hash",
    "wall_time",
    "warnings",
    "error",
)


def _counts_line(data: ReportData) -> str:
    return (
        f"{len(data.rows)} cells: "
        + ", ".join(f"{n} {s}" for s, n in data.status_counts.items())
        + ". "
        + status_line(data.rows)
        + "."
    )


# ------------------------------------------------------------------------------ terminal
def print_report(data: ReportData, console: Any) -> None:
    """The protocol, leaderboards, verdict matrix, published numbers, diverged cells, the
    verdict labels and one line on failed cells, on a rich console."""
    from rich.text import Text

    for table in protocol_tables(data) + leaderboard_tables(data) + verdict_tables(data):
        console.print(rich_table(table))
    for extra in (published_table(data), diverged_table(data)):
        if extra is not None:
            console.print(rich_table(extra))
    labels = Table(
        title="Verdict labels", columns=("label", "meaning"), rows=tuple(glossary(data)[:7])
    )
    console.print(rich_table(labels))
    failed = any(r.status == "failed" for r in data.rows)
    console.print(Text(status_line(data.rows), style="bold red" if failed else "green"))


def rich_table(table: Table) -> Any:
    from rich.table import Table as RichTable
    from rich.text import Text

    out = RichTable(title=table.title, caption=table.caption or None, title_justify="left")
    for col in table.columns:
        out.add_column(col)
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            style = VERDICT_STYLES.get(verdict_key(cell), "") if i in table.verdict_columns else ""
            cells.append(Text(cell, style=style))  # Text, not markup: cells hold "[" and "]"
        out.add_row(*cells)
    return out


# ------------------------------------------------------------------------------ Markdown
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(data: ReportData, figures: Sequence[Figure] = ()) -> str:
    lines = [
        f"# {TITLE}",
        "",
        _counts_line(data),
        "",
        UNITS_LINE + " " + settings_line(data) + ".",
        "",
    ]
    for title, tables in sections(data):
        lines += [f"## {title}", ""]
        if not tables:
            lines += ["(nothing to show)", ""]
        for table in tables:
            if len(tables) > 1 or table.title != title:
                lines += [f"### {table.title}", ""]
            lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
            lines.append("|" + "|".join("---" for _ in table.columns) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
            lines.append("")
            if table.caption:
                lines += [f"_{_md_cell(table.caption)}_", ""]
    if figures:
        lines += ["## Figures", ""]
        for number, fig in enumerate(figures, 1):
            lines += [
                f"![{fig.title}]({fig.file_name('png')})",
                "",
                (
                    f"**Figure {number}. {fig.title}.** {fig.caption} "
                    f"Also as [SVG]({fig.file_name('svg')}) and [PDF]({fig.file_name('pdf')})."
                ),
                "",
            ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- HTML
HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 0.2em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.caption, figcaption { color: #57606a; font-size: 0.9em; margin-bottom: 1.2em; max-width: 60em; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; display: block; }
""" + "".join(
    f".v-{name.replace(' ', '-')} {{ color: {colour}; font-weight: 600; }}\n"
    for name, colour in VERDICT_COLOURS.items()
)


def render_html(data: ReportData, figures: Sequence[Figure] = ()) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{TITLE}</title>',
        f"<style>{HTML_STYLE}</style></head><body>",
        f"<h1>{TITLE}</h1>",
        f"<p>{e(_counts_line(data))}</p>",
        f"<p>{e(UNITS_LINE)} {e(settings_line(data))}.</p>",
    ]
    for title, tables in sections(data):
        parts.append(f'<h2 id="{e(title.lower().replace(" ", "-"))}">{e(title)}</h2>')
        if not tables:
            parts.append("<p>(nothing to show)</p>")
        for table in tables:
            if len(tables) > 1 or table.title != title:
                parts.append(f"<h3>{e(table.title)}</h3>")
            parts.append(
                "<table><thead><tr>"
                + "".join(f"<th>{e(c)}</th>" for c in table.columns)
                + "</tr></thead><tbody>"
            )
            for row in table.rows:
                cells = []
                for i, cell in enumerate(row):
                    word = verdict_key(cell) if i in table.verdict_columns else ""
                    cls = f' class="v-{word.replace(" ", "-")}"' if word else ""
                    cells.append(f"<td{cls}>{e(cell)}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table>")
            if table.caption:
                parts.append(f'<p class="caption">{e(table.caption)}</p>')
    if figures:
        parts.append('<h2 id="figures">Figures</h2>')
        for number, fig in enumerate(figures, 1):
            parts.append(
                f'<figure id="{e(fig.name)}"><img src="{e(fig.file_name("svg"))}" alt="{e(fig.title)}">'
                f"<figcaption><b>Figure {number}. {e(fig.title)}.</b> {e(fig.caption)} Also as "
                f'<a href="{e(fig.file_name("png"))}">PNG</a> and <a href="{e(fig.file_name("pdf"))}">PDF</a>.'
                "</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------- CSV
def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return value


def render_csv(data: ReportData) -> str:
    """One row per cell: what was run and what came out, accuracies and sparsities as fractions
    in [0, 1] (history and per-layer densities are in the JSON)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in data.rows:
        writer.writerow([_csv_value(getattr(row, c, None)) for c in CSV_COLUMNS])
    return buf.getvalue()


# ---------------------------------------------------------------------------------- JSON
def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if attrs.has(type(value)):
        return _jsonable(attrs.asdict(value))
    return value


def _scaled(d: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """``d`` with ``fields`` (in points) as fractions."""
    return {
        k: (
            v / ACCURACY_POINTS
            if k in fields and isinstance(v, (int, float)) and not isinstance(v, bool)
            else v
        )
        for k, v in d.items()
    }


def _interval_fields(d: dict[str, Any], bounds: tuple[float, float]) -> dict[str, Any]:
    lo, hi, clipped = clip(d.get("ci_low"), d.get("ci_high"), bounds)
    return {**d, "ci_low": lo, "ci_high": hi, "ci_clipped": bool(d.get("ci_clipped")) or clipped}


def leaderboard_payload(data: ReportData) -> list[dict[str, Any]]:
    out = []
    for r in data.ranks:
        d = _interval_fields(r.as_dict(), ACCURACY_BOUNDS)
        if d.get("vs_random_ticket"):
            d["vs_random_ticket"] = _scaled(
                _interval_fields(d["vs_random_ticket"], DELTA_BOUNDS), ("mean", "ci_low", "ci_high")
            )
        out.append(_scaled(d, ("mean", "sd", "ci_low", "ci_high")))
    return out


def effects_payload(data: ReportData) -> list[dict[str, Any]]:
    return [
        _scaled(
            _interval_fields(e.as_dict(), effect_bounds(e)),
            ("mean", "sd", "ci_low", "ci_high", "clean_mean", "perturbed_mean", "margin"),
        )
        for e in data.effects
    ]


def published_payload(data: ReportData) -> list[dict[str, Any]]:
    out = []
    for c in data.published:
        d = _interval_fields(c.as_dict(), ACCURACY_BOUNDS)
        d["published"] = _scaled(dict(d["published"]), ("accuracy",))
        out.append(
            _scaled(
                d,
                (
                    "measured_mean",
                    "measured_sd",
                    "measured_min",
                    "measured_max",
                    "ci_low",
                    "ci_high",
                    "difference",
                ),
            )
        )
    return out


def report_payload(data: ReportData, figures: Sequence[Figure] = ()) -> dict[str, Any]:
    """What report.json holds (and ``prunekit report --json`` prints): accuracies, sparsities,
    effects and differences as fractions in [0, 1] (``units``)."""
    from prunekit import __version__

    names = [fig.file_name(fmt) for fig in figures for fmt in FIGURE_FORMATS]
    return _jsonable(
        {
            "prunekit_version": __version__,
            "units": {
                "values": UNITS["machine"],
                "settings": "names ending in _points are accuracy points (percent); 'sequential' is the "
                "recorded design, whose margin is in points",
            },
            "settings": {
                "tolerance_points": data.tolerance,
                "margin_points": data.margin,
                "margin": data.margin / ACCURACY_POINTS,
                "alpha": data.level,
                "sequential": None if data.design is None else attrs.asdict(data.design),
                "verdict_rules": verdict_rules(data),
                "test_sets": [attrs.asdict(g) for g in data.granularity],
                "confidence": data.confidence,
                "n_boot": data.n_boot,
                "bootstrap_seed": data.seed,
                "metric": "final_accuracy",
            },
            "protocol": [g.as_dict() for g in data.protocols],
            "software": [s.as_dict() for s in data.software],
            "labels": dict(glossary(data)),
            "status_counts": data.status_counts,
            "status": status_line(data.rows),
            "leaderboard": leaderboard_payload(data),
            "effects": effects_payload(data),
            "verdicts": [v.as_dict() for v in data.verdicts],
            "published": published_payload(data),
            "diverged": {m: {"diverged": d, "trained": n} for m, (d, n) in data.diverged().items()},
            "failures": [
                {"error": msg, "count": len(group), "keys": [r.key for r in group]}
                for msg, group in failure_summary(data.rows)
            ],
            "figures": names,
            "cells": [r.as_dict() for r in data.rows],
        }
    )


def render_json(data: ReportData, figures: Sequence[Figure] = ()) -> str:
    return (
        json.dumps(
            report_payload(data, figures), indent=2, sort_keys=True, default=str, allow_nan=False
        )
        + "\n"
    )
