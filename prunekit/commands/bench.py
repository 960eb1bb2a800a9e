"""``prunekit bench``: rank every installed method across the sanity checks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from prunekit.completion import complete_names
from prunekit.console import console as make_console
from prunekit.errors import PrunekitError

T = TypeVar("T")


def _csv(value: str | None, cast: Callable[[str], T], what: str) -> list[T]:
    if not value:
        return []
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise PrunekitError(f"cannot read {value!r} as a comma-separated list of {what}") from None


@click.command()
@click.option("--all", "everything", is_flag=True, help="Every installed method × every check that applies to it.")
@click.option("--suite", "suite_name", default="quick", show_default=True, shell_complete=complete_names("suite"), help="Suite name (`prunekit list suite`) or a .toml file.")
@click.option("--methods", default=None, help="Only these methods (comma-separated).")
@click.option("--checks", default=None, help="Only these checks (comma-separated); the clean run `none` is always included.")
@click.option("--sparsities", default=None, help="These sparsities instead of the suite's, e.g. 0.9,0.95.")
@click.option("--seeds", default=None, help="These seeds instead of the suite's, e.g. 0,1.")
@click.option("--dry-run", is_flag=True, help="Check the names, the store path, the executor, the data and the trainer, print the grid and its estimated cost; run and write nothing.")
@click.option("--db", type=click.Path(), default="prunekit-results.db", show_default=True, help="SQLite results store (resumes from it).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Reports and plots (default: prunekit-report/ beside the db).")
@click.option(
    "--executor",
    "executor_name",
    default="auto",
    show_default=True,
    help="auto (worker processes, one per CPU core, when the suite's cost estimate puts the grid at a "
    "minute or more; else this process: the choice and why are printed), local, processes, or a plugin's "
    "executor (`prunekit list executor`).",
)
@click.option("--jobs", type=int, default=None, help="Worker processes of auto and processes (default: one per CPU core, or per GPU when several are visible).")
@click.option("--cell-timeout", type=click.FloatRange(min=0, min_open=True), default=None, help="Seconds a cell may run before it is stopped and marked failed (local and processes executors).")
@click.option("--ray-address", default=None, help="Ray cluster address for --executor ray (e.g. auto or ray://host:10001).")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the suite's; auto for GPU suites).")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Where datasets live (overrides the suite).")
@click.option("--json", "as_json", is_flag=True, help="Summary and leaderboard as JSON on stdout.")
@click.option(
    "--until-decided",
    is_flag=True,
    help="Add seeds to the (method, check) pairs whose verdict is still open, with a sequential rule that keeps each verdict's error rate.",
)
@click.option("--max-seeds", type=click.IntRange(3, 1000), default=20, show_default=True, help="--until-decided: seeds a pair may reach.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, help="--until-decided: seconds after which no further round starts.")
@click.option(
    "--wandb",
    "use_wandb",
    is_flag=True,
    help="Also log to Weights & Biases: a run per cell (live with the local executor), the masks as artifacts, "
    "a report run. WANDB_* variables and wandb's settings apply; the --wandb-* flags override them.",
)
@click.option("--wandb-project", default=None, help="W&B project (default: WANDB_PROJECT, else prunekit).")
@click.option("--wandb-entity", default=None, help="W&B entity (default: WANDB_ENTITY, else your default entity).")
@click.option(
    "--wandb-mode",
    type=click.Choice(["online", "offline", "disabled"]),
    default=None,
    help="W&B mode (default: WANDB_MODE, else wandb's own setting: `wandb offline`, else online).",
)
@click.option("--wandb-dir", type=click.Path(file_okay=False), default=None, help="Folder for wandb's files (default: WANDB_DIR, else ./wandb).")
@click.option(
    "--wandb-group",
    default=None,
    help="Group of the runs (default: WANDB_RUN_GROUP, else the suite's name): name a study so a resumed one stays one group.",
)
@click.option("--wandb-log-reused", is_flag=True, help="Also log the cells reused from the store (done by an earlier bench).")
@click.option("--wandb-log-weights", is_flag=True, help="Also log each cell's trained weights as an artifact (local executor).")
def bench(
    everything: bool,
    suite_name: str,
    methods: str | None,
    checks: str | None,
    sparsities: str | None,
    seeds: str | None,
    dry_run: bool,
    db: str,
    out: str | None,
    executor_name: str,
    jobs: int | None,
    cell_timeout: float | None,
    ray_address: str | None,
    device: str | None,
    data_root: str | None,
    as_json: bool,
    until_decided: bool,
    max_seeds: int,
    time_budget: float | None,
    use_wandb: bool,
    wandb_project: str | None,
    wandb_entity: str | None,
    wandb_mode: str | None,
    wandb_dir: str | None,
    wandb_group: str | None,
    wandb_log_reused: bool,
    wandb_log_weights: bool,
) -> None:
    """Run a benchmark suite: prune, check, train, store, rank and report.

    Resumable: cells already done in --db are reused; cells left running by a killed run and
    failed cells run again. Exits non-zero when any cell failed.
    """
    from prunekit.bench.grid import Filters
    from prunekit.bench.plan import plan_bench
    from prunekit.bench.report import build_report, print_report, report_payload, write_reports
    from prunekit.bench.runner import new_bench_id, run_plan, run_until_decided
    from prunekit.bench.suite import resolve_suite
    from prunekit.validate import check_output_dir, resolve_device

    suite = resolve_suite(suite_name)
    filters = Filters(
        everything=everything,
        methods=_csv(methods, str, "names"),
        checks=_csv(checks, str, "names"),
        sparsities=_csv(sparsities, float, "numbers"),
        seeds=_csv(seeds, int, "integers"),
    )
    dev = str(resolve_device(device or ("auto" if suite.device == "cuda" else "cpu")))
    options: dict[str, Any] = {"address": ray_address} if ray_address else {}
    if cell_timeout is not None:
        options["cell_timeout"] = cell_timeout
    # the grid's names, the store path, the executor, the data and the trainer: each a one-line
    # error before W&B or the store is touched
    plan = plan_bench(
        suite, db=db, filters=filters, executor=executor_name, jobs=jobs, executor_options=options, device=dev,
        data_root=data_root, live=use_wandb,
    )  # fmt: skip
    if dry_run:
        _print_grid(plan, as_json)
        return
    console = make_console(stderr=True)
    out_dir = Path(out) if out else plan.db.resolve().parent / "prunekit-report"
    check_output_dir(out_dir, "--out")
    if out_dir.is_dir():  # a foreign file under the report's manifest name: one line, before any training
        from prunekit.bench.report import read_manifest

        read_manifest(out_dir)
    if device is None and suite.device == "cuda" and not dev.startswith("cuda"):
        console.print(f"warning: suite {suite.name} is meant for a GPU and none is available: running on {dev}", style="yellow", highlight=False)
    bench_id = new_bench_id()
    sink = None
    executor = plan.executor
    if use_wandb:
        from prunekit.bench.wandb_sink import WandbSink

        sink = WandbSink(
            project=wandb_project, entity=wandb_entity, mode=wandb_mode, bench_id=bench_id, dir=wandb_dir,
            group=wandb_group, suite=suite.name, log_reused=wandb_log_reused, log_weights=wandb_log_weights,
        )  # fmt: skip
        if not getattr(executor, "streams", False):
            console.print(
                f"note: the {executor.name} executor reports each cell when it ends: its W&B run is logged then, "
                "its history replayed, without mask or weight artifacts (live runs and artifacts: --executor local)",
                style="yellow",
                highlight=False,
            )
    if plan.choice is not None and plan.choice.name != "local":  # the local default goes unsaid
        console.print(
            f"executor: {plan.choice.reason}; --executor local runs the cells in this process", highlight=False
        )
    run_options: dict[str, Any] = {"progress": not as_json, "wandb": sink, "bench_id": bench_id, "argv": sys.argv}
    design = None
    if until_decided:
        summary, design = run_until_decided(plan, max_seeds=max_seeds, time_budget=time_budget, **run_options)
    else:
        summary = run_plan(plan, **run_options)
    # the report, computed once, for the files, W&B, the terminal and --json alike
    data = build_report(summary.rows, tolerance=suite.equivalence_margin, design=design, suites=(suite,))
    files = write_reports(data, out_dir)
    if sink is not None:
        sink.finish(data, out_dir)
    if as_json:
        payload = report_payload(data)
        payload["summary"] = summary.as_dict()
        payload["files"] = [str(f) for f in files]
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        print_report(data, make_console())
        console.print(f"{summary.line()}. Store: {plan.db}; reports: {out_dir}")
    if summary.failed:
        raise PrunekitError(
            f"{summary.failed} of {summary.total} cells failed (their errors are in the report); "
            "run the same command again to retry them"
        )


def _print_grid(plan: Any, as_json: bool) -> None:
    """The plan's grid (method: checks, cells), the checks that do not apply and why, and the cost."""
    from collections import Counter

    suite, grid, seconds = plan.suite, plan.grid, plan.estimated_seconds
    if as_json:
        import attrs

        click.echo(
            json.dumps(
                {
                    "suite": suite.name,
                    "protocol": suite.fingerprint(),
                    "cells": [attrs.asdict(c) for c in grid.cells],
                    "skipped": [attrs.asdict(s) for s in grid.skipped],
                    "not_applicable_cells": len(grid.not_applicable),
                    "estimated_seconds": seconds,
                    "executor": plan.executor.name,
                    "jobs": plan.executor.jobs,
                    "executor_reason": plan.choice.reason if plan.choice is not None else None,
                },
                indent=2,
                default=str,
            )
        )
        return
    from rich.table import Table

    cost = "cost unknown (the suite gives no estimated_cell_seconds)" if seconds is None else _duration(seconds)
    title = f"suite {suite.name} (protocol {suite.fingerprint()}): {len(grid.cells)} cells, {cost} on {suite.device}"
    table = Table(title=title)
    for col in ("method", "checks run", "cells"):
        table.add_column(col)
    per_method = Counter(c.method for c in grid.cells)
    checks: dict[str, list[str]] = {}
    for c in grid.cells:
        if c.check not in checks.setdefault(c.method, []):
            checks[c.method].append(c.check)
    for m, n in per_method.items():
        table.add_row(m, ", ".join(checks[m]), str(n))
    console = make_console()
    console.print(table)
    how = plan.choice.reason if plan.choice is not None else f"{plan.executor.name} (--executor)"
    console.print(f"executor: {how}", highlight=False)
    if grid.skipped:
        skipped = Table(title=f"{len(grid.skipped)} method/check pairs not applicable (not run)")
        for col in ("method", "check", "reason"):
            skipped.add_column(col)
        for s in grid.skipped:
            skipped.add_row(s.method, s.check, s.reason)
        console.print(skipped)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.0f} h"
