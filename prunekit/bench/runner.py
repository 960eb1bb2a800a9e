"""The benchmark driver: grid -> executor -> results store, resumable, with live progress."""

from __future__ import annotations

import platform
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from prunekit import __version__
from prunekit.bench.executors import Executor
from prunekit.bench.grid import Grid
from prunekit.bench.records import ResultRow
from prunekit.bench.store import ResultStore
from prunekit.bench.suite import Suite
from prunekit.cell import CellResult, CellSpec
from prunekit.plugins import get_plugins


@attrs.frozen(kw_only=True)
class BenchSummary:
    bench_id: str
    total: int
    ran: int
    done: int
    failed: int
    reused: int
    skipped: int
    wall_time: float


def cell_versions(spec: CellSpec) -> dict[str, str]:
    """Versions of the plugins that produce a cell (prunekit's included), for its key: installing
    an unrelated plugin does not invalidate finished cells."""
    plugins = get_plugins()
    method = plugins.registry("method").get(spec.method)
    entries = [
        plugins.registry("method").entry(spec.method),
        plugins.registry("trainer").entry(spec.trainer),
        plugins.registry("dataset").entry(spec.dataset),
    ]
    if method.scorer is not None:
        entries.append(plugins.registry("scorer").entry(method.scorer))
        entries.append(plugins.registry("ratio_schedule").entry(method.schedule))
    for part in spec.check.split("+"):
        entries.append(plugins.registry("sanity_check").entry(part))
    versions = {"prunekit": __version__}
    versions.update({e.origin.plugin: e.origin.version for e in entries})
    return versions


def cell_key(spec: CellSpec, suite: Suite) -> str:
    return f"{suite.fingerprint()}-{spec.key(cell_versions(spec))}"


def environment(device: str) -> dict[str, Any]:
    import timm

    return {
        "prunekit": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else platform.processor() or "cpu",
        "plugins": get_plugins().versions(),
    }


def _row(spec: CellSpec, suite: Suite, key: str, status: str, bench_id: str, env: dict[str, Any],
         result: CellResult | None = None, error: str | None = None) -> ResultRow:
    metrics: dict[str, Any] = {}
    if result is not None:
        metrics = dict(
            final_accuracy=result.final_accuracy,
            best_accuracy=result.best_accuracy,
            final_loss=result.final_loss,
            achieved_sparsity=result.sparsity,
            effective_sparsity=result.effective_sparsity,
            wall_time=result.wall_time,
            layer_density=dict(result.layer_density),
            history=[dict(h) for h in result.history],
        )
    return ResultRow(
        key=key, suite=suite.name, model=spec.model, dataset=spec.dataset, method=spec.method,
        check=spec.check, sparsity=spec.sparsity, seed=spec.seed, protocol=suite.fingerprint(),
        status=status, error=error, environment=env, bench_id=bench_id, **metrics,  # type: ignore[arg-type]
    )


def new_bench_id() -> str:
    """A bench id: the start time and a random suffix."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def run_bench(
    suite: Suite,
    grid: Grid,
    *,
    store: ResultStore,
    executor: Executor,
    device: str = "cpu",
    cache_dir: Path | None = None,
    progress: bool = True,
    on_row: Callable[[ResultRow], None] | None = None,
    argv: list[str] | None = None,
    bench_id: str | None = None,
) -> BenchSummary:
    """Run every cell of ``grid`` not yet done in ``store``; record each result as it arrives.

    Cells already ``done`` are reused (resume); ``running`` cells (a killed run) and ``failed``
    ones run again. A cell whose plugin raises is recorded as failed with its error and the grid
    goes on. Checks that the data is present before anything is written.
    """
    from prunekit.cell import _data

    started = time.perf_counter()
    _data(suite.dataset, suite.data_root)  # a missing dataset fails here, before any write
    bench_id = bench_id or new_bench_id()
    keyed = [(spec, cell_key(spec, suite)) for spec in grid.cells]
    status = store.statuses(k for _, k in keyed)
    todo = [(spec, key) for spec, key in keyed if status.get(key) != "done"]
    env = environment(device)
    store.start_bench(bench_id, suite.name, argv or sys.argv, get_plugins().versions())
    keys = dict((id(spec), key) for spec, key in todo)
    done = failed = 0

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, disable=not progress or not todo, transient=False,
    ) as bar:
        task = bar.add_task(f"{suite.name}: {len(todo)} to run, {len(keyed) - len(todo)} reused", total=len(todo))
        for spec, key in todo:
            store.record(_row(spec, suite, key, "running", bench_id, env))
        for spec, result, error in executor.run([s for s, _ in todo], device=device, cache_dir=cache_dir):
            key = keys.get(id(spec)) or cell_key(spec, suite)
            row = _row(spec, suite, key, "done" if error is None else "failed", bench_id, env, result, error)
            store.record(row)
            if error is None:
                done += 1
            else:
                failed += 1
            if on_row is not None:
                on_row(row)
            bar.update(task, advance=1, description=f"{spec.method} / {spec.check} / s={spec.sparsity:g} / seed {spec.seed}")
    return BenchSummary(
        bench_id=bench_id, total=len(keyed), ran=len(todo), done=done, failed=failed,
        reused=len(keyed) - len(todo), skipped=len(grid.skipped), wall_time=time.perf_counter() - started,
    )
