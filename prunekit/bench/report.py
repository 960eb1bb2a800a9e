"""Benchmark reports: the terminal summary, Markdown / HTML / CSV / JSON files and PNG plots.

Everything is computed once (:func:`build_report`) and laid out as plain tables
(:class:`Table`) that each renderer draws: rich in the terminal, Markdown, self-contained HTML
(inline CSS; the plots as ``<img>`` links to the PNGs beside it). :func:`write_reports`
renders every file in memory first and then writes each one atomically (temporary file +
rename), so a failure leaves either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from prunekit.bench.published import Comparison, compare_published
from prunekit.bench.records import ResultRow
from prunekit.bench.stats import (
    COMBINATION_RULE,
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_TOLERANCE,
    DENSE_METHOD,
    MIN_SEEDS,
    REFERENCE_METHOD,
    Delta,
    Effect,
    Granularity,
    Rank,
    SequentialDesign,
    VerdictSummary,
    accuracy_granularity,
    check_effects,
    ranking,
    verdict_matrix,
)
from prunekit.atomic import atomic_write
from prunekit.errors import PrunekitError

FORMATS = ("md", "html", "csv", "json")
FILE_NAMES = {"md": "report.md", "html": "report.html", "csv": "results.csv", "json": "report.json"}
ACCURACY_PLOT = "accuracy_vs_sparsity.png"
EFFECTS_PLOT = "check_effects.png"
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
    "wall_time",
    "error",
)
VERDICT_STYLES = {
    "passes": "green",
    "fails": "red",
    "raises accuracy": "cyan",
    "inconclusive": "yellow",
    "too few seeds": "dim",
    "mixed": "magenta",
}
VERDICT_COLOURS = {
    "passes": "#1a7f37",
    "fails": "#cf222e",
    "raises accuracy": "#0969da",
    "inconclusive": "#9a6700",
    "too few seeds": "#6e7781",
    "mixed": "#8250df",
}
VERDICT_MARKS = {"passes": "P", "fails": "F", "raises accuracy": "R", "inconclusive": "?", "too few seeds": f"<{MIN_SEEDS}"}
DASH = "–"


# ------------------------------------------------------------------------ the computation
@attrs.frozen(kw_only=True)
class ReportData:
    """Every number a report shows, computed once from the rows."""

    rows: tuple[ResultRow, ...]
    ranks: tuple[Rank, ...]
    effects: tuple[Effect, ...]
    verdicts: tuple[VerdictSummary, ...]
    published: tuple[Comparison, ...]
    tolerance: float
    confidence: float
    n_boot: int
    seed: int
    alpha: float = DEFAULT_ALPHA
    design: SequentialDesign | None = None  # verdicts of the sequential rule (--until-decided)
    granularity: tuple[Granularity, ...] = ()

    @property
    def margin(self) -> float:
        """The equivalence margin the verdicts used (points)."""
        return self.tolerance if self.design is None else self.design.margin

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.status for r in self.rows).items()))


def build_report(
    rows: Iterable[ResultRow],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    design: SequentialDesign | None = None,
) -> ReportData:
    """``tolerance`` is the equivalence margin (points), ``alpha`` each verdict's error rate,
    ``confidence`` the leaderboard intervals' level; ``design``: verdicts by the sequential rule."""
    rows = tuple(rows)
    effects = check_effects(rows, margin=tolerance, alpha=alpha, design=design)
    return ReportData(
        rows=rows,
        ranks=tuple(ranking(rows, n_boot=n_boot, seed=seed, confidence=confidence)),
        effects=tuple(effects),
        verdicts=tuple(verdict_matrix(effects)),
        published=tuple(compare_published(rows)),
        tolerance=tolerance,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        design=design,
        granularity=tuple(accuracy_granularity(rows)),
    )


def _first_line(error: str | None, limit: int = 160) -> str:
    line = next((ln.strip() for ln in (error or "").splitlines() if ln.strip()), "no error message")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failure_summary(rows: Iterable[ResultRow]) -> list[tuple[str, list[ResultRow]]]:
    """Failed cells grouped by the first line of their error, most frequent first."""
    groups: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.status == "failed":
            groups[_first_line(row.error)].append(row)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def status_line(rows: Sequence[ResultRow]) -> str:
    """One line: how many cells are done, failed (with their errors), not applicable, running."""
    counts = Counter(r.status for r in rows)
    total = len(rows)
    if counts["failed"]:
        errors = "; ".join(f"{len(group)} × {msg}" for msg, group in failure_summary(rows)[:3])
        more = len(failure_summary(rows)) - 3
        line = f"{counts['failed']} of {total} cells failed: {errors}" + (
            f"; and {more} other errors" if more > 0 else ""
        )
    else:
        line = f"no cell failed ({counts['done']} of {total} done)"
    extras = [
        f"{counts[s]} {label}"
        for s, label in (
            ("not_applicable", "not applicable"),
            ("running", "still running or interrupted"),
            ("diverged", "diverged (training stopped: loss or weights not finite; not ranked)"),
            ("stale", "stale (stored by other code, options or plugin versions; not used)"),
        )
        if counts[s]
    ]
    return line + (f"; {', '.join(extras)}" if extras else "")


# ------------------------------------------------------------------------------ tables
@attrs.frozen(kw_only=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    verdict_columns: frozenset[int] = frozenset()  # cells coloured by the verdict they name


def _pct(sparsity: float) -> str:
    return f"{sparsity * 100:.4g}%"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return DASH if x is None or not math.isfinite(x) else format(x, fmt)


def _mean_ci(r: Rank) -> str:
    """Mean ± half-width; [low, high] when clipped at 0 or 100; no interval below MIN_SEEDS
    seeds ("too few seeds") or when every seed gave the same accuracy ("no seed variance")."""
    if r.mean is None:
        return DASH
    if r.ci_low is None or r.ci_high is None:
        if r.n >= MIN_SEEDS and r.sd == 0.0:
            return f"{r.mean:.2f} (no seed variance)"
        return f"{r.mean:.2f} (too few seeds)" if r.n < MIN_SEEDS else _num(r.mean)
    if r.ci_clipped:
        return f"{r.mean:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] (clipped)"
    return f"{r.mean:.2f} ± {(r.ci_high - r.ci_low) / 2:.2f}"


def _rank_text(rank: float | None) -> str:
    return DASH if rank is None else f"{rank:.2f}".rstrip("0").rstrip(".")


def _interval(lo: float | None, hi: float | None, fmt: Any = _rank_text) -> str:
    if lo is None or hi is None:
        return DASH
    return f"{fmt(lo)}–{fmt(hi)}"


def _delta_text(delta: Delta | None) -> str:
    if delta is None:
        return DASH
    text = f"{delta.mean:+.2f}"
    if delta.ci_low is not None and delta.ci_high is not None:
        text += f" [{delta.ci_low:+.2f}, {delta.ci_high:+.2f}]"
    elif delta.note:
        text += f" ({delta.note})"
    return text + ("" if delta.paired else " (unpaired)")


def _short(protocol: str) -> str:
    return protocol if len(protocol) <= 12 else protocol[:12]


def _group_title(protocol: str, model: str, dataset: str) -> str:
    return f"{model} on {dataset} (protocol {_short(protocol)})"


def leaderboard_tables(data: ReportData) -> list[Table]:
    """One table per (protocol, model, dataset, sparsity), then each group's overall ranking."""
    boards: dict[tuple[str, str, str, float | None], list[Rank]] = defaultdict(list)
    for r in data.ranks:
        boards[(r.protocol, r.model, r.dataset, r.sparsity)].append(r)
    conf = f"{data.confidence:.0%}"
    tables = []
    for (protocol, model, dataset, sparsity), board in boards.items():
        group = _group_title(protocol, model, dataset)
        if sparsity is None:
            tables.append(
                Table(
                    title=f"{group}: overall ranking (mean rank across sparsities)",
                    columns=("mean rank", "method", "sparsities", "rank interval", "mean final acc. %"),
                    rows=tuple(
                        (_rank_text(r.rank), r.method, str(r.n), _interval(r.rank_low, r.rank_high), _num(r.mean))
                        for r in board
                    ),
                    caption=f"rank interval: 2.5–97.5 percentiles over {data.n_boot} bootstrap draws of the seeds",
                )
            )
            continue
        tables.append(
            Table(
                title=f"{group}: sparsity {_pct(sparsity)}",
                columns=(
                    "rank",
                    "method",
                    "seeds",
                    f"final acc. % (mean ± {conf} CI)",
                    "rank interval",
                    f"Δ vs {REFERENCE_METHOD} [{conf} CI]",
                ),
                rows=tuple(
                    (
                        "ref" if r.reference else _rank_text(r.rank),
                        r.method,
                        str(r.n),
                        _mean_ci(r),
                        _interval(r.rank_low, r.rank_high),
                        _delta_text(r.vs_random_ticket),
                    )
                    for r in board
                ),
                caption=(
                    f"clean runs (check none); intervals need ≥ {MIN_SEEDS} seeds and are clipped to "
                    "[0, 100]; rank interval: 2.5–97.5 percentiles over "
                    f"{data.n_boot} bootstrap draws of the seeds; Δ paired by seed where possible"
                    + ("; dense is the unranked reference" if any(r.reference for r in board) else "")
                ),
            )
        )
    return tables


def _verdict_cell(v: VerdictSummary) -> str:
    total = sum(v.counts.values())
    if v.verdict != "mixed":
        return v.verdict if total == 1 else f"{v.verdict} ({total}/{total})"
    return v.text()


def _verdict_key(cell: str) -> str:
    """The verdict a table cell starts with (the longest name that matches), or ""."""
    names = sorted(VERDICT_STYLES, key=len, reverse=True)
    return next((name for name in names if cell.startswith(name)), "")


def verdict_rules(data: ReportData) -> str:
    """The verdicts' definitions and error rates, in words (the verdict tables' caption)."""
    level = data.alpha if data.design is None else data.design.alpha
    margin = data.margin
    rules = (
        f"Δ = clean − with check, paired by seed. passes: a one-sided t test finds the check lowers "
        f"accuracy (a check that does not is called 'passes' with probability ≤ {level:g}); fails: "
        f"equivalence by two one-sided t tests (TOST) with margin ±{margin:g} point(s) (a check that "
        f"changes accuracy by {margin:g} or more is called 'fails' with probability ≤ {level:g}), "
        f"also when a real drop is smaller than the margin; raises accuracy: a one-sided t test finds "
        f"the check raises it; otherwise inconclusive; too few seeds: fewer than {MIN_SEEDS} paired "
        "seeds, no test. Error rates hold per verdict and per pair, not across the table."
    )
    if data.design is not None:
        rules += " " + data.design.describe() + "."
    return rules + " " + COMBINATION_RULE


def verdict_tables(data: ReportData) -> list[Table]:
    """Method × check per (protocol, model, dataset); each cell over the sparsities run."""
    groups: dict[tuple[str, str, str], list[VerdictSummary]] = defaultdict(list)
    for v in data.verdicts:
        groups[(v.protocol, v.model, v.dataset)].append(v)
    tables = []
    for (protocol, model, dataset), verdicts in groups.items():
        checks = sorted({v.check for v in verdicts})
        methods = sorted({v.method for v in verdicts})
        cell = {(v.method, v.check): _verdict_cell(v) for v in verdicts}
        tables.append(
            Table(
                title=f"{_group_title(protocol, model, dataset)}: sanity-check verdicts",
                columns=("method", *checks),
                rows=tuple((m, *(cell.get((m, c), DASH) for c in checks)) for m in methods),
                caption=verdict_rules(data),
                verdict_columns=frozenset(range(1, len(checks) + 1)),
            )
        )
    return tables


def effect_tables(data: ReportData) -> list[Table]:
    groups: dict[tuple[str, str, str], list[Effect]] = defaultdict(list)
    for e in data.effects:
        groups[(e.protocol, e.model, e.dataset)].append(e)
    return [
        Table(
            title=f"{_group_title(*key)}: check effects",
            columns=(
                "method",
                "check",
                "sparsity",
                "seeds",
                "clean %",
                "with check %",
                "effect, points [interval]",
                "verdict",
                "note",
            ),
            rows=tuple(
                (
                    e.method,
                    e.check,
                    _pct(e.sparsity),
                    str(e.n),
                    _num(e.clean_mean),
                    _num(e.perturbed_mean),
                    _effect_text(e),
                    e.verdict,
                    e.note,
                )
                for e in effects
            ),
            caption=(
                "effect = clean − with check, paired by seed (positive: the check lowers accuracy); "
                f"interval: two-sided {1 - 2 * (data.alpha if data.design is None else data.design.level()):.0%} t "
                f"interval (passes ⇔ above 0, fails ⇔ inside ±{data.margin:g}); none from fewer than "
                f"{MIN_SEEDS} seeds or without seed variance"
                + ("".join(f"; {g.text()}" for g in data.granularity))
            ),
            verdict_columns=frozenset({7}),
        )
        for key, effects in groups.items()
    ]


def _effect_text(e: Effect) -> str:
    if e.mean is None:
        return DASH
    text = f"{e.mean:+.2f}"
    if e.ci_low is not None and e.ci_high is not None:
        return text + f" [{e.ci_low:+.2f}, {e.ci_high:+.2f}]"
    if e.no_variance:
        return text + " (no seed variance)"
    return text + (" (too few seeds)" if e.n < MIN_SEEDS else "")


def published_table(data: ReportData) -> Table | None:
    """Our clean runs beside each published number, in the metric it was published in (the
    authors' code logs best-epoch accuracy), with the t interval of our mean and its verdict."""
    if not data.published:
        return None
    metric = {"best_accuracy": "best epoch", "final_accuracy": "final epoch"}
    level = f"{data.published[0].confidence:.0%}"
    return Table(
        title="Published numbers beside ours",
        columns=(
            "model",
            "dataset",
            "method",
            "sparsity",
            "accuracy",
            "seeds",
            "ours: mean (min–max)",
            f"{level} CI of our mean",
            "published",
            "ours − published",
            "verdict",
            "source",
        ),
        rows=tuple(
            (
                c.model,
                c.dataset,
                c.method,
                _pct(c.sparsity),
                metric.get(c.metric, c.metric),
                str(c.n),
                f"{c.measured_mean:.2f} ({c.measured_min:.2f}–{c.measured_max:.2f})",
                DASH if c.ci_low is None or c.ci_high is None else f"[{c.ci_low:.2f}, {c.ci_high:.2f}]",
                f"{c.published.accuracy:.2f}",
                f"{c.difference:+.2f}",
                c.verdict,
                c.published.source + ("" if c.published.confirmed else " *"),
            )
            for c in data.published
        ),
        caption=(
            "test accuracy of the clean runs in the metric each number was published in (the "
            "authors' code logs the best epoch's); meaningful only under the paper's full protocol "
            f"(the paper suites). Consistent with published: the published number lies inside the "
            f"{level} t confidence interval of our mean over seeds (a two-sided t test at "
            f"{1 - data.published[0].confidence:.0%} does not reject equality; the published "
            "number's own seed noise is not counted); needs ≥ 3 seeds. * unconfirmed transcription"
        ),
    )

def failure_table(data: ReportData) -> Table | None:
    groups = failure_summary(data.rows)
    if not groups:
        return None
    return Table(
        title="Failed cells",
        columns=("cells", "error", "e.g."),
        rows=tuple(
            (
                str(len(group)),
                message,
                f"{group[0].method} / {group[0].check} / {_pct(group[0].sparsity)} / seed {group[0].seed}",
            )
            for message, group in groups
        ),
    )


def stale_table(data: ReportData) -> Table | None:
    """Rows stored by other code, options or plugin versions, grouped by why (never in the stats)."""
    groups: dict[str, list[ResultRow]] = defaultdict(list)
    for row in data.rows:
        if row.status == "stale":
            groups[_first_line(row.error)].append(row)
    if not groups:
        return None
    return Table(
        title="Rows from other code, options or plugin versions: shown, never used in statistics",
        columns=("rows", "why", "example"),
        rows=tuple(
            (str(len(group)), why, f"{group[0].method} / {group[0].check} / {_pct(group[0].sparsity)} / seed {group[0].seed}")
            for why, group in sorted(groups.items(), key=lambda kv: -len(kv[1]))
        ),
    )


def _sections(data: ReportData) -> list[tuple[str, list[Table]]]:
    sections: list[tuple[str, list[Table]]] = [
        ("Leaderboard", leaderboard_tables(data)),
        ("Sanity-check verdicts", verdict_tables(data)),
        ("Check effects", effect_tables(data)),
    ]
    for title, table in (
        ("Published numbers", published_table(data)),
        ("Failures", failure_table(data)),
        ("Stale rows (not used)", stale_table(data)),
    ):
        if table is not None:
            sections.append((title, [table]))
    return sections


def _settings_line(data: ReportData) -> str:
    verdicts = (
        f"verdicts at error rate {data.alpha:g} each, equivalence margin ±{data.margin:g} point(s)"
        if data.design is None
        else data.design.describe()
    )
    grain = "; ".join(g.text() for g in data.granularity)
    return (
        f"{verdicts}; leaderboard intervals {data.confidence:.0%}, "
        f"{data.n_boot} bootstrap draws (seed {data.seed}); accuracies in percent"
        + (f"; test sets: {grain}" if grain else "")
    )


# ----------------------------------------------------------------------------- terminal
def print_terminal_report(
    rows: Sequence[ResultRow],
    console: Any,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = 1000,
    seed: int = 0,
    design: SequentialDesign | None = None,
) -> None:
    """Leaderboards (mean ± CI, rank interval, Δ vs random ticket), the verdict matrix,
    published numbers where they match, and one line on failed cells, on a rich console."""
    data = build_report(rows, tolerance=tolerance, confidence=confidence, n_boot=n_boot, seed=seed, design=design)
    for table in leaderboard_tables(data) + verdict_tables(data):
        console.print(_rich_table(table))
    published = published_table(data)
    if published is not None:
        console.print(_rich_table(published))
    from rich.text import Text

    failed = any(r.status == "failed" for r in data.rows)
    console.print(Text(status_line(data.rows), style="bold red" if failed else "green"))


def _rich_table(table: Table) -> Any:
    from rich.table import Table as RichTable
    from rich.text import Text

    out = RichTable(title=table.title, caption=table.caption or None, title_justify="left")
    for col in table.columns:
        out.add_column(col)
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            style = ""
            if i in table.verdict_columns:
                style = VERDICT_STYLES.get(_verdict_key(cell), "")
            cells.append(Text(cell, style=style))  # Text, not markup: cells hold "[" and "]"
        out.add_row(*cells)
    return out


# ------------------------------------------------------------------------------- files
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(data: ReportData, plots: Sequence[str] = ()) -> str:
    lines = [
        "# prunekit benchmark report",
        "",
        f"{len(data.rows)} cells: "
        + ", ".join(f"{n} {s}" for s, n in data.status_counts.items())
        + ". " + status_line(data.rows) + ".",
        "",
        _settings_line(data) + ".",
        "",
    ]
    for title, tables in _sections(data):
        lines += [f"## {title}", ""]
        if not tables:
            lines += ["(nothing to show)", ""]
        for table in tables:
            lines += [f"### {table.title}", ""]
            lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
            lines.append("|" + "|".join("---" for _ in table.columns) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
            lines.append("")
            if table.caption:
                lines += [f"_{table.caption}_", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 0.2em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; }
th { background: #f6f8fa; }
caption, .caption { color: #57606a; font-size: 0.9em; margin-bottom: 1.2em; }
img { max-width: 100%; display: block; margin: 1em 0; }
""" + "".join(
    f".v-{name.replace(' ', '-')} {{ color: {colour}; font-weight: 600; }}\n" for name, colour in VERDICT_COLOURS.items()
)


def render_html(data: ReportData, plots: Sequence[str] = ()) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>prunekit benchmark report</title>',
        f"<style>{HTML_STYLE}</style></head><body>",
        "<h1>prunekit benchmark report</h1>",
        f"<p>{len(data.rows)} cells: "
        + e(", ".join(f"{n} {s}" for s, n in data.status_counts.items()))
        + f". {e(status_line(data.rows))}.</p>",
        f"<p>{e(_settings_line(data))}.</p>",
    ]
    for title, tables in _sections(data):
        parts.append(f"<h2>{e(title)}</h2>")
        if not tables:
            parts.append("<p>(nothing to show)</p>")
        for table in tables:
            parts.append(f"<h3>{e(table.title)}</h3><table><thead><tr>")
            parts += [f"<th>{e(c)}</th>" for c in table.columns]
            parts.append("</tr></thead><tbody>")
            for row in table.rows:
                cells = []
                for i, cell in enumerate(row):
                    cls = ""
                    if i in table.verdict_columns:
                        word = _verdict_key(cell)
                        cls = f' class="v-{word.replace(" ", "-")}"' if word else ""
                    cells.append(f"<td{cls}>{e(cell)}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</tbody></table>")
            if table.caption:
                parts.append(f'<p class="caption">{e(table.caption)}</p>')
    if plots:
        parts.append("<h2>Plots</h2>")
        parts += [f'<img src="{e(p)}" alt="{e(Path(p).stem)}">' for p in plots]
    parts.append("</body></html>")
    return "\n".join(parts)


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def render_csv(data: ReportData) -> str:
    """One row per cell: what was run and what came out (history and layers are in the JSON)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in data.rows:
        writer.writerow([_csv_value(getattr(row, c)) for c in CSV_COLUMNS])
    return buf.getvalue()


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


def report_payload(data: ReportData) -> dict[str, Any]:
    """What report.json holds (and ``prunekit report --json`` prints)."""
    from prunekit import __version__

    return _jsonable(
        {
            "prunekit_version": __version__,
            "settings": {
                "tolerance_points": data.tolerance,
                "margin_points": data.margin,
                "alpha": data.alpha if data.design is None else data.design.alpha,
                "sequential": None if data.design is None else attrs.asdict(data.design),
                "verdict_rules": verdict_rules(data),
                "test_sets": [attrs.asdict(g) for g in data.granularity],
                "confidence": data.confidence,
                "n_boot": data.n_boot,
                "bootstrap_seed": data.seed,
                "metric": "final_accuracy (percent)",
            },
            "status_counts": data.status_counts,
            "status": status_line(data.rows),
            "leaderboard": [r.as_dict() for r in data.ranks],
            "effects": [e.as_dict() for e in data.effects],
            "verdicts": [v.as_dict() for v in data.verdicts],
            "published": [c.as_dict() for c in data.published],
            "failures": [
                {"error": msg, "count": len(group), "keys": [r.key for r in group]}
                for msg, group in failure_summary(data.rows)
            ],
            "cells": [r.as_dict() for r in data.rows],
        }
    )


def render_json(data: ReportData) -> str:
    return json.dumps(report_payload(data), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------- plots
def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without touching pyplot's global state
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def plot_accuracy_vs_sparsity(data: ReportData) -> bytes | None:
    """Mean clean final accuracy against sparsity, one line per method with its CI band; the
    dense reference as a dashed line. One panel per (protocol, model, dataset)."""
    groups: dict[tuple[str, str, str], list[Rank]] = defaultdict(list)
    for r in data.ranks:
        if r.sparsity is not None:
            groups[(r.protocol, r.model, r.dataset)].append(r)
    groups = {k: v for k, v in groups.items() if any(not r.reference for r in v)}
    if not groups:
        return None
    ncols = min(2, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig = _new_figure(6.4 * ncols, 4.2 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (key, ranks) in zip(axes, groups.items(), strict=False):
        by_method: dict[str, list[Rank]] = defaultdict(list)
        for r in ranks:
            by_method[r.method].append(r)
        for method, points in sorted(by_method.items()):
            points.sort(key=lambda r: r.sparsity or 0.0)
            if method == DENSE_METHOD:
                ref = points[0]
                assert ref.mean is not None
                ax.axhline(ref.mean, color="black", linestyle="--", linewidth=1, label="dense")
                if ref.ci_low is not None and ref.ci_high is not None:
                    ax.axhspan(ref.ci_low, ref.ci_high, color="black", alpha=0.08)
                continue
            xs = [r.sparsity for r in points]
            ys = [r.mean for r in points]
            (line,) = ax.plot(xs, ys, marker="o", label=method)
            lows = [r.ci_low if r.ci_low is not None else r.mean for r in points]
            highs = [r.ci_high if r.ci_high is not None else r.mean for r in points]
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2)
        ax.set_title(_group_title(*key), fontsize=9)
        ax.set_xlabel("sparsity (fraction of prunable weights removed)")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    return _png(fig)


def plot_check_effects(data: ReportData) -> bytes | None:
    """Heatmap of the mean effect (clean − with check, points): rows method @ sparsity,
    columns checks, one panel per (protocol, model, dataset); cells marked P / F / ? by verdict."""
    import numpy as np

    groups: dict[tuple[str, str, str], list[Effect]] = defaultdict(list)
    for e in data.effects:
        if e.mean is not None:
            groups[(e.protocol, e.model, e.dataset)].append(e)
    if not groups:
        return None
    layouts = []
    for key, effects in groups.items():
        rows = sorted({(e.method, e.sparsity) for e in effects})
        cols = sorted({e.check for e in effects})
        layouts.append((key, effects, rows, cols))
    heights = [max(2.0, 0.35 * len(rows) + 1.5) for _, _, rows, _ in layouts]
    width = max(5.0, 1.3 * max(len(cols) for *_, cols in layouts) + 3.0)
    fig = _new_figure(width, sum(heights))
    axes = fig.subplots(len(layouts), 1, squeeze=False, height_ratios=heights).ravel()
    limit = max([abs(e.mean) for g in groups.values() for e in g if e.mean is not None] + [2 * data.tolerance, 1.0])
    mark = VERDICT_MARKS
    for ax, (key, effects, rows, cols) in zip(axes, layouts, strict=True):
        grid = np.full((len(rows), len(cols)), np.nan)
        labels: dict[tuple[int, int], str] = {}
        for e in effects:
            assert e.mean is not None
            i, j = rows.index((e.method, e.sparsity)), cols.index(e.check)
            grid[i, j] = e.mean
            labels[(i, j)] = f"{e.mean:+.1f} {mark[e.verdict]}"
        ax.set_facecolor("#eeeeee")  # grey: not run / not applicable
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        for (i, j), text in labels.items():
            dark = abs(grid[i, j]) > 0.6 * limit
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), [f"{m} @ {_pct(s)}" for m, s in rows], fontsize=8)
        ax.set_title(_group_title(*key), fontsize=9)
        fig.colorbar(image, ax=ax, label="clean − with check (points)")
    return _png(fig)


# ------------------------------------------------------------------------------ writing
def write_reports(
    rows: Sequence[ResultRow],
    out_dir: Path,
    formats: Sequence[str] = FORMATS,
    plots: bool = True,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = 1000,
    seed: int = 0,
    design: SequentialDesign | None = None,
) -> list[Path]:
    """Write the chosen report files (``report.md``, ``report.html``, ``results.csv``,
    ``report.json``) and, with ``plots``, ``accuracy_vs_sparsity.png`` and
    ``check_effects.png`` (each only when there is something to plot) into ``out_dir``.

    Everything is rendered before anything is written; each file is written atomically.
    Returns the paths written, plots first.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise PrunekitError(f"unknown report format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    data = build_report(rows, tolerance=tolerance, confidence=confidence, n_boot=n_boot, seed=seed, design=design)
    files: dict[str, bytes] = {}
    if plots:
        for name, render in ((ACCURACY_PLOT, plot_accuracy_vs_sparsity), (EFFECTS_PLOT, plot_check_effects)):
            png = render(data)
            if png is not None:
                files[name] = png
    plot_names = list(files)
    renderers = {
        "md": lambda: render_markdown(data, plot_names),
        "html": lambda: render_html(data, plot_names),
        "csv": lambda: render_csv(data),
        "json": lambda: render_json(data),
    }
    for fmt in FORMATS:
        if fmt in formats:
            files[FILE_NAMES[fmt]] = renderers[fmt]().encode("utf-8")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = out_dir / name
        atomic_write(path, content)
        written.append(path)
    return written


__all__ = [
    "ACCURACY_PLOT",
    "EFFECTS_PLOT",
    "FILE_NAMES",
    "FORMATS",
    "ReportData",
    "Table",
    "atomic_write",
    "build_report",
    "failure_summary",
    "leaderboard_tables",
    "print_terminal_report",
    "render_csv",
    "render_html",
    "render_json",
    "render_markdown",
    "report_payload",
    "status_line",
    "verdict_tables",
    "write_reports",
]
