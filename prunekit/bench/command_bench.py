"""``prunekit bench``: rank every installed method across the sanity checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import click

from prunekit.errors import PrunekitError


def _csv(value: str | None, cast: type = str) -> list:  # type: ignore[type-arg]
    if not value:
        return []
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise PrunekitError(f"cannot read {value!r} as a comma-separated list of {cast.__name__}") from None


@click.command()
@click.option("--all", "all_methods", is_flag=True, help="Every installed method × every check that applies to it.")
@click.option("--suite", "suite_name", default="quick", show_default=True, help="Suite name (`prunekit list suites`) or a .toml file.")
@click.option("--methods", default=None, help="Only these methods (comma-separated).")
@click.option("--checks", default=None, help="Only these checks (comma-separated); the clean run is always included.")
@click.option("--sparsities", default=None, help="Only these sparsities, e.g. 0.9,0.95.")
@click.option("--seeds", default=None, help="Only these seeds, e.g. 0,1.")
@click.option("--dry-run", is_flag=True, help="Print the grid and its estimated cost; run and write nothing.")
@click.option("--db", type=click.Path(), default="prunekit-results.db", show_default=True, help="SQLite results store.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Reports and plots (default: prunekit-report/ beside the db).")
@click.option("--executor", "executor_name", default="local", show_default=True, help="local, processes, or a plugin's executor.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes (the processes executor).")
@click.option("--ray-address", default=None, help="Ray cluster address for --executor ray (e.g. auto or ray://host:10001).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the suite's).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Where datasets live (overrides the suite).")
@click.option("--json", "as_json", is_flag=True, help="Summary and leaderboard as JSON on stdout.")
@click.option("--wandb", "use_wandb", is_flag=True, help="Also log to Weights & Biases.")
@click.option("--wandb-project", default="prunekit", show_default=True)
@click.option("--wandb-entity", default=None)
@click.option("--wandb-mode", type=click.Choice(["online", "offline"]), default="online", show_default=True)
def bench(
    all_methods: bool, suite_name: str, methods: str | None, checks: str | None, sparsities: str | None,
    seeds: str | None, dry_run: bool, db: str, out: str | None, executor_name: str, jobs: int,
    ray_address: str | None, device: str | None, data_root: str | None, as_json: bool, use_wandb: bool, wandb_project: str,
    wandb_entity: str | None, wandb_mode: str,
) -> None:
    """Run a benchmark suite: prune, check, train, store, rank and report."""
    from rich.console import Console

    from prunekit.bench.grid import expand
    from prunekit.bench.suite import resolve_suite
    from prunekit.cli import resolve_device
    from prunekit.plugins import get_plugins

    suite = resolve_suite(suite_name)
    if data_root is not None:
        suite = attrs.evolve(suite, data_root=data_root)
    grid = expand(
        suite, all_methods=all_methods, methods=_csv(methods), checks=_csv(checks),
        sparsities=_csv(sparsities, float), seeds=_csv(seeds, int),
    )
    console = Console(stderr=True)
    if dry_run:
        _print_grid(suite, grid, as_json)
        return
    dev = str(resolve_device(device or ("auto" if suite.device == "cuda" else "cpu")))
    executor_cls = get_plugins().registry("executor").get(executor_name)
    executor = executor_cls(jobs=jobs, **({"address": ray_address} if ray_address else {}))
    from prunekit.bench.store import ResultStore

    store = ResultStore(db)
    out_dir = Path(out) if out else Path(db).resolve().parent / "prunekit-report"
    from prunekit.bench.runner import new_bench_id

    bench_id = new_bench_id()
    sink = None
    if use_wandb:
        out_dir.mkdir(parents=True, exist_ok=True)
        from prunekit.bench.wandb_sink import WandbSink

        sink = WandbSink(project=wandb_project, entity=wandb_entity, mode=wandb_mode, bench_id=bench_id, dir=out_dir)
    from prunekit.bench.runner import run_bench

    summary = run_bench(
        suite, grid, store=store, executor=executor, device=dev,
        cache_dir=Path(db).resolve().parent / ".prunekit-cache",
        progress=not as_json, on_row=sink.log_cell if sink is not None else None, argv=sys.argv,
        bench_id=bench_id,
    )
    from prunekit.bench.runner import cell_key

    wanted = {cell_key(spec, suite) for spec in grid.cells}
    rows = [r for r in store.rows(suite=suite.name) if r.key in wanted]  # this grid's cells only
    from prunekit.bench.report import print_terminal_report, write_reports

    files = write_reports(rows, out_dir)
    if sink is not None:
        sink.finish(rows, out_dir)
    store.close()
    if as_json:
        from prunekit.bench.report import build_report, report_payload

        payload = report_payload(build_report(rows))
        payload["summary"] = attrs.asdict(summary)
        payload["files"] = [str(f) for f in files]
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        print_terminal_report(rows, Console())
        console.print(
            f"{summary.total} cells: {summary.done} run, {summary.reused} reused, {summary.failed} failed, "
            f"{summary.skipped} method/check pairs not applicable; {summary.wall_time:.0f} s. "
            f"Store: {db}; reports: {out_dir}"
        )
    if summary.failed:
        raise PrunekitError(f"{summary.failed} of {summary.total} cells failed; see the report or `prunekit report`")


def _print_grid(suite, grid, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    from collections import Counter

    seconds = grid.estimate_seconds(suite.cell_seconds)
    if as_json:
        click.echo(json.dumps({
            "suite": suite.name, "cells": [attrs.asdict(c) for c in grid.cells],
            "skipped": [attrs.asdict(s) for s in grid.skipped], "estimated_seconds": seconds,
        }, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"suite {suite.name}: {len(grid.cells)} cells, ~{seconds / 60:.0f} min on {suite.device}")
    for col in ("method", "checks", "cells"):
        table.add_column(col)
    per_method = Counter(c.method for c in grid.cells)
    checks: dict[str, list[str]] = {}
    for c in grid.cells:
        if c.check not in checks.setdefault(c.method, []):
            checks[c.method].append(c.check)
    for m, n in per_method.items():
        table.add_row(m, ", ".join(checks[m]), str(n))
    Console().print(table)
    if grid.skipped:
        click.echo(f"{len(grid.skipped)} method/check pairs not applicable, e.g. "
                   f"{grid.skipped[0].method} × {grid.skipped[0].check}: {grid.skipped[0].reason}")
