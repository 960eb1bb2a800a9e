"""``prunekit report``: regenerate reports and plots from the results store, running nothing."""

from __future__ import annotations

import importlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import click

from prunekit.bench.report import FORMATS
from prunekit.bench.stats import DEFAULT_CONFIDENCE, DEFAULT_TOLERANCE
from prunekit.errors import PrunekitError
from prunekit.validate import check_output_dir

FALLBACK_DB = "prunekit-results.db"  # used only if the store module names no default
REPORT_DIR = "prunekit-report"  # beside the store, where `prunekit bench` writes its reports


def _default_db() -> str:
    try:
        store = importlib.import_module("prunekit.bench.store")
    except ImportError:  # pragma: no cover - a broken install
        return FALLBACK_DB

    for name in ("DEFAULT_DB", "DEFAULT_DB_PATH", "DEFAULT_PATH"):
        value = getattr(store, name, None)
        if value:
            return str(value)
    return FALLBACK_DB


def load_rows(db: Path, suite: str | None) -> list[Any]:
    """Every row of the store (all statuses, so failures are reported), one suite or all; rows
    that today's code would key differently come back with status ``stale``."""
    if not db.is_file():
        raise PrunekitError(
            f"no results store at {db}: run `prunekit bench` first, or pass --db with the path "
            "of the store it wrote"
        )
    try:
        from prunekit.bench.store import ResultStore
    except ImportError as err:  # pragma: no cover - a broken install
        raise PrunekitError(f"the results store is not available in this install ({err})") from None
    try:
        with ResultStore(db, create=False) as store:
            rows = list(store.rows(suite=suite))
    except sqlite3.DatabaseError as err:
        raise PrunekitError(f"{db} is not a readable prunekit results store ({err})") from None
    if not rows:
        where = f" for suite {suite!r}" if suite else ""
        raise PrunekitError(f"the results store {db} holds no results{where}; run `prunekit bench` first")
    from prunekit.bench.runner import mark_stale

    return mark_stale(rows)


def _reading(db: Path, rows: list[Any]) -> tuple[float, Any]:
    """How the bench meant its verdicts to be read, for rows of one suite: the suite's
    equivalence margin and the sequential design of an ``--until-decided`` run (recorded in the
    store). Rows of several suites, or a suite that no longer resolves: the defaults."""
    from prunekit.bench.stats import SequentialDesign
    from prunekit.bench.store import ResultStore
    from prunekit.bench.suite import resolve_suite

    suites = {r.suite for r in rows}
    if len(suites) != 1:
        return DEFAULT_TOLERANCE, None
    (name,) = suites
    try:
        margin = resolve_suite(name).equivalence_margin
    except PrunekitError:
        margin = DEFAULT_TOLERANCE
    with ResultStore(db, create=False) as store:
        recorded = store.bench_settings(name).get("design")
    if recorded:
        design = SequentialDesign(**recorded)
        return design.margin, design
    return margin, None


@click.command()
@click.option("--db", "db", type=click.Path(dir_okay=False), default=None, help="Results store written by `prunekit bench` (default: the bench's own default).")
@click.option("--suite", default=None, help="Only the cells of this suite (default: every suite in the store).")
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True, help="Report format; repeatable (default: all of md, html, csv, json). Files of an earlier report in --out that this one does not write are removed.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for the reports and plots (default: prunekit-report/ beside the store, as `prunekit bench` writes).")
@click.option("--tolerance", type=float, default=None, help="Equivalence margin: largest effect of a check, in accuracy points, that still counts as 'no change' (default: the suite's equivalence_margin, else 1).")
@click.option("--confidence", type=float, default=DEFAULT_CONFIDENCE, show_default=True, help="Level of the confidence intervals, in (0, 1).")
@click.option("--no-plots", is_flag=True, help="Skip the figures (PNG, SVG and PDF).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the report's JSON, without per-cell rows).")
def report(
    db: str | None,
    suite: str | None,
    formats: tuple[str, ...],
    out: str | None,
    tolerance: float | None,
    confidence: float,
    no_plots: bool,
    as_json: bool,
) -> None:
    """Regenerate reports and plots from the results store without re-running any cell."""
    from prunekit.bench.report import build_report, print_report, report_payload, write_reports

    if not 0.0 < confidence < 1.0:
        raise PrunekitError(f"--confidence must lie strictly between 0 and 1, got {confidence}")
    if tolerance is not None and tolerance <= 0.0:
        raise PrunekitError(f"--tolerance is in accuracy points and must be > 0, got {tolerance}")
    db_path = Path(db if db is not None else _default_db())
    rows = load_rows(db_path, suite)
    out_dir = Path(out) if out is not None else db_path.resolve().parent / REPORT_DIR
    check_output_dir(out_dir, "--out")
    margin, design = _reading(db_path, rows)
    settings: dict[str, Any] = {
        "tolerance": tolerance if tolerance is not None else margin,
        "confidence": confidence,
        # a sequential run is read by its own rule, at the margin asked for (fixed-seed tests
        # on seeds added until a verdict came would overstate the evidence)
        "design": design if design is None or tolerance is None else attrs.evolve(design, margin=tolerance),
    }
    data = build_report(rows, **settings)  # once, for the files, the terminal and --json alike
    written = write_reports(data, out_dir, formats=formats or FORMATS, plots=not no_plots)
    if as_json:
        payload = report_payload(data)
        payload.pop("cells")
        payload["files"] = [str(p) for p in written]
        click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))
        return
    from prunekit.console import console as make_console

    console = make_console()
    print_report(data, console)
    console.print(f"wrote {len(written)} files to {out_dir}: " + ", ".join(p.name for p in written), highlight=False)
