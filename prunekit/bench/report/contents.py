"""What a report holds, in order: the sections of tables and the figures, the instruments'
among them (:mod:`prunekit.bench.instrument_report`). Every renderer draws these."""

from __future__ import annotations

from prunekit.bench.instrument_report import instrument_figures, instrument_sections

from .data import ReportData
from .plots import FIGURES, Figure
from .tables import (
    Table,
    diverged_table,
    effect_tables,
    failure_table,
    glossary_table,
    leaderboard_tables,
    protocol_tables,
    published_table,
    software_table,
    stale_table,
    verdict_tables,
)


def sections(data: ReportData) -> list[tuple[str, list[Table]]]:
    """The report's sections in order (the protocol and the labels come first)."""
    out: list[tuple[str, list[Table]]] = [("Protocol", protocol_tables(data))]
    software = software_table(data)
    if software is not None:
        out.append(("Software versions", [software]))
    out += [
        ("How to read this report", [glossary_table(data)]),
        ("Leaderboard", leaderboard_tables(data)),
        ("Sanity-check verdicts", verdict_tables(data)),
        ("Check effects", effect_tables(data)),
    ]
    out += instrument_sections(data)
    for title, table in (
        ("Published numbers", published_table(data)),
        ("Diverged cells", diverged_table(data)),
        ("Failures", failure_table(data)),
        ("Stale rows (not used)", stale_table(data)),
    ):
        if table is not None:
            out.append((title, [table]))
    return out




def render_figures(data: ReportData) -> list[Figure]:
    """Every figure there is something to draw for, in report order."""
    return [fig for fig in (render(data) for render in FIGURES) if fig is not None] + instrument_figures(data)
