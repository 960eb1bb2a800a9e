"""The benchmark driver: suite -> grid -> executor -> results store, resumable, with live progress.

:func:`run_plan` runs every cell of a checked plan (:mod:`prunekit.bench.plan`) that the
store does not hold as ``done``; :func:`run_bench` plans and runs. Cells left ``running`` by a killed run and ``failed`` cells run again;
``done`` cells are reused. Results are recorded one by one as they arrive, by this process only.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import attrs
import torch

from prunekit import __version__, identity
from prunekit import cell_identity as identities
from prunekit.bench.executors import Executor
from prunekit.bench.grid import Filters
from prunekit.bench.plan import BenchPlan, plan_bench
from prunekit.bench.records import ResultRow, Status
from prunekit.bench.stats import SequentialDesign
from prunekit.bench.store import ResultStore
from prunekit.bench.suite import Suite
from prunekit.cell import CellResult, CellSpec
from prunekit.cell_identity import Identity
from prunekit.errors import PrunekitError
from prunekit.identity import canonical
from prunekit.plugins import get_plugins
from prunekit.sentinels import CLEAN_CHECK, DENSE_METHOD

FINISHED = ("done", "diverged")  # statuses reused on resume (diverging is a deterministic outcome)


class CellSink(Protocol):
    """Where finished cells also go (the W&B sink)."""

    def log_cell(self, row: ResultRow) -> Any: ...


@attrs.frozen(kw_only=True)
class BenchSummary:
    """What one ``run_bench`` did. ``total`` counts the cells to run (the grid); cells of checks
    that do not apply are counted apart, in ``not_applicable`` (``skipped_pairs`` pairs)."""

    bench_id: str
    total: int
    ran: int
    done: int
    failed: int
    reused: int
    diverged: int = 0
    not_applicable: int
    skipped_pairs: int
    wall_time: float
    rows: tuple[ResultRow, ...] = attrs.field(repr=False)  # this grid's cells, as stored

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self, filter=lambda a, _: a.name != "rows")

    def line(self) -> str:
        return (
            f"{self.total} cells: {self.done} run, {self.reused} reused, {self.failed} failed"
            + (f", {self.diverged} diverged" if self.diverged else "")
            + "; "
            f"{self.not_applicable} cells of {self.skipped_pairs} method/check pairs not applicable; "
            f"{self.wall_time:.0f} s"
        )


def cell_identity(spec: CellSpec, device: str) -> Identity:
    """The identity (key and payload) of a cell run on ``device`` (its type enters the key)."""
    return identities.cell_identity(spec, device_type=torch.device(device).type)


def environment(device: str, executor: str) -> dict[str, Any]:
    """Versions, device and plugins, recorded with every row."""
    import timm

    cuda = device.startswith("cuda") and torch.cuda.is_available()
    return {
        "prunekit": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "device": device,
        "device_name": (
            torch.cuda.get_device_name(torch.device(device)) if cuda else platform.processor() or platform.machine()
        ),
        "cuda": torch.version.cuda if cuda else None,
        "executor": executor,
        "plugins": get_plugins().versions(),
    }


def new_bench_id() -> str:
    """A bench id: the start time and a random suffix."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _row(
    spec: CellSpec,
    suite: Suite,
    ident: Identity,
    status: Status,
    bench_id: str,
    env: Mapping[str, Any],
    result: CellResult | None = None,
    error: str | None = None,
) -> ResultRow:
    metrics: dict[str, Any] = {}
    if result is not None:
        metrics = {
            "final_accuracy": result.final_accuracy,
            "best_accuracy": result.best_accuracy,
            "final_loss": result.final_loss,
            "achieved_sparsity": result.sparsity,
            "effective_sparsity": result.effective_sparsity,
            "wall_time": result.wall_time,
            "layer_density": dict(result.layer_density),
            "history": [dict(h) for h in result.history],
            "mask_hash": result.mask_hash,
            "dense_accuracy": result.dense_accuracy,
            "tie_fraction": result.tie_fraction,
            "warnings": list(result.warnings),
            "instruments": dict(result.instruments),
        }
    return ResultRow(
        key=ident.key,
        suite=suite.name,
        model=spec.model,
        dataset=spec.dataset,
        method=spec.method,
        check=spec.check,
        sparsity=spec.sparsity,
        seed=spec.seed,
        protocol=suite.fingerprint(),
        status=status,
        error=error,
        environment=dict(env) | ({"torch_threads": result.torch_threads} if result is not None else {}),
        bench_id=bench_id,
        spec=spec_payload(spec),
        identity=ident.payload,
        **metrics,
    )


def spec_payload(spec: CellSpec) -> dict[str, Any]:
    """A cell's spec as stored (enough to rebuild it with :func:`spec_from_payload`)."""
    return {f.name: canonical(getattr(spec, f.name)) for f in attrs.fields(CellSpec) if f.name != "data_root"}


def spec_from_payload(payload: Mapping[str, Any], data_root: str | None = None) -> CellSpec:
    """The :class:`CellSpec` of a stored row (raises ``TypeError``/``ValueError`` when the row
    comes from a prunekit whose spec had other fields)."""
    from prunekit.interfaces import TrainConfig

    fields = dict(payload)
    protocol: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields["protocol"].items()}
    fields["protocol"] = TrainConfig(**protocol)
    for name in ("model_options", "method_options", "check_options", "dataset_options", "instruments"):
        if name in fields:
            fields[name] = _from_canonical(fields[name])
    return CellSpec(**fields, data_root=data_root)


def _from_canonical(value: Any) -> Any:
    """Stored option pairs back to their converter's input (lists of pairs -> mappings)."""
    if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value):
        return {k: _from_canonical(v) for k, v in value}
    if isinstance(value, list):
        return tuple(value)
    return value


WAIT_SECONDS = 2.0  # how often a bench looks at cells another bench on the same store is running


def owner_alive(owner: str) -> bool:
    """Whether the bench that claimed a cell (``host:pid:bench``) may still be running it: on
    this host, whether its process exists; on another host this cannot be seen, so it counts as
    alive and its cells are left to it (not waited for)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # an earlier bench of this very process, which is not running it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _local(store: ResultStore, key: str) -> bool:
    """Whether the bench holding cell ``key`` runs on this host (so it can be waited for)."""
    found = store.db.execute("SELECT owner FROM cells WHERE key = ?", (key,)).fetchone()
    return bool(found and found[0] and str(found[0]).partition(":")[0] == socket.gethostname())


def _run_claimed(
    specs: Sequence[CellSpec],
    runner: Executor,
    store: ResultStore,
    suite: Suite,
    idents: Mapping[CellSpec, Identity],
    bench_id: str,
    env: Mapping[str, Any],
    device: str,
    cache_dir: Path,
    wandb: CellSink | None,
    show: Callable[[int, str], None],
    counts: dict[str, int],
) -> None:
    """Run ``specs`` (claimed by this bench) on the executor and record each result as it comes."""
    todo = {spec: idents[spec].key for spec in specs}
    if runner.in_order and specs:
        show(0, f"running {_cell_text(specs[0])}")
    live: dict[str, Any] = {}  # a streaming executor tells the sink of each cell's start and epochs
    if wandb is not None and getattr(runner, "streams", False) and hasattr(wandb, "events"):
        live["events"] = wandb.events(lambda spec: _row(spec, suite, idents[spec], "running", bench_id, env))
    for spec, result, error in runner.run(list(specs), device=device, cache_dir=cache_dir, **live):
        key = todo.pop(spec, None)
        if key is None:
            raise PrunekitError(
                f"executor {runner.name!r} returned a cell it was not given, or one cell twice: {_cell_text(spec)}"
            )
        if error is None and result is None:
            error = f"executor {runner.name!r} returned neither a result nor an error"
        row = _row(spec, suite, idents[spec], _status(error), bench_id, env, result, error)
        store.record(row)
        counts[row.status] += 1
        if wandb is not None:
            wandb.log_cell(row)
        current = f"running {_cell_text(next(iter(todo)))}" if runner.in_order and todo else f"finished {_cell_text(spec)}"
        show(1, current + (f" · {counts['failed']} failed" if counts["failed"] else ""))
    for spec in todo:  # the executor ended without them
        row = _row(spec, suite, idents[spec], "failed", bench_id, env, error=f"executor {runner.name!r} returned no result")
        store.record(row)
        counts["failed"] += 1
        if wandb is not None:
            wandb.log_cell(row)


def _status(error: str | None) -> Status:
    """A cell's status from its error text: ``done``, ``diverged`` (training blew up: a finding
    about the method, kept out of rankings) or ``failed``."""
    if error is None:
        return "done"
    return "diverged" if error.startswith("DivergedError") else "failed"


def _na_identity(spec: CellSpec, device: str) -> Identity:
    """The identity of a cell that is not run because its check does not apply (the check is
    left unresolved, since resolving it is what refuses it)."""
    base = cell_identity(attrs.evolve(spec, check=CLEAN_CHECK, check_options={}), device)
    payload = {**base.payload, "check": {"name": spec.check, "not_applicable": True}}
    return Identity(key=identity.digest(payload), payload=payload)


def _cell_text(spec: CellSpec) -> str:
    at = "" if spec.method == DENSE_METHOD else f" at {spec.sparsity:g}"
    return f"{spec.model} {spec.method} / {spec.check}{at}, seed {spec.seed}"


@contextmanager
def _progress(
    enabled: bool, title: str, total: int, counts: Mapping[str, int] | None = None
) -> Iterator[Callable[[int, str], None]]:
    """Progress of the bench on stderr (:func:`prunekit.console.progress`): a live rich bar on a
    terminal, periodic plain lines elsewhere; cells done/total, failures (from ``counts``),
    elapsed, ETA and the current cell. Yields ``show(advance, text)``."""
    from prunekit.console import progress

    with progress(title, total, unit="cells", enabled=enabled) as bar:

        def show(advance: int, text: str) -> None:
            if counts is not None:
                bar.failed = counts.get("failed", 0)
            bar.advance(advance, _FAILED_SUFFIX.sub("", text))

        yield show


_FAILED_SUFFIX = re.compile(r" · \d+ failed$")  # the reporter counts failures itself


def run_bench(
    suite: Suite,
    *,
    db: str | Path,
    filters: Filters = Filters(),
    executor: str | Executor = "local",
    jobs: int | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    executor_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> BenchSummary:
    """Plan ``suite``'s grid (:func:`~prunekit.bench.plan.plan_bench`: every check before any
    training) and run it (:func:`run_plan`, which takes ``options``)."""
    plan = plan_bench(
        suite, db=db, filters=filters, executor=executor, jobs=jobs, executor_options=executor_options,
        device=device, data_root=data_root,
    )  # fmt: skip
    return run_plan(plan, **options)


def run_plan(
    plan: BenchPlan,
    *,
    progress: bool = True,
    wandb: CellSink | None = None,
    bench_id: str | None = None,
    argv: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> BenchSummary:
    """Run every cell of the plan's grid not yet done in its store. ``settings`` are recorded
    with the bench (how its verdicts are to be read).

    Cells already ``done`` are reused; ``running`` (killed) and ``failed`` ones run again.
    Cells of checks that do not apply are recorded as ``not_applicable`` with the reason. Each
    result is recorded as it arrives (a raising plugin fails its own cell only, with its error
    text) and passed to ``wandb.log_cell``. The dense cache lives in ``.prunekit-cache/`` beside
    the store, so pre-training is computed once per (model, data, protocol, seed).
    """
    started = time.perf_counter()
    suite, grid, device, runner, data = plan.suite, plan.grid, plan.device, plan.executor, plan.data
    bench_id = bench_id or new_bench_id()
    idents = {spec: cell_identity(spec, device) for spec in grid.cells}
    keyed = {spec: ident.key for spec, ident in idents.items()}
    cache_dir = plan.cache_dir
    env = {
        **environment(device, runner.name),
        "test_size": len(data.test),
        "train_size": len(data.train),
        "augmentation": attrs.asdict(data.augment),
    }
    runner.connect()  # before the store is opened: a failed connection leaves it untouched
    store = ResultStore(plan.db)
    try:
        store.start_bench(
            bench_id, suite.name, list(argv if argv is not None else sys.argv), get_plugins().versions(), settings
        )
        not_applicable = [
            _row(spec, suite, _na_identity(spec, device), "not_applicable", bench_id, env, error=reason)
            for spec, reason in grid.not_applicable
        ]
        store.record(*not_applicable)
        owner = f"{socket.gethostname()}:{os.getpid()}:{bench_id}"
        by_key = {ident.key: spec for spec, ident in idents.items()}
        pending = [_row(spec, suite, idents[spec], "running", bench_id, env) for spec in grid.cells]
        claimed, elsewhere = store.claim(pending, owner=owner, finished=FINISHED, alive=owner_alive)
        counts = {"done": 0, "failed": 0, "diverged": 0}
        total_todo = len(claimed) + len(elsewhere)
        with _progress(progress and total_todo > 0, suite.name, total_todo, counts) as show:
            while True:
                _run_claimed(
                    [by_key[r.key] for r in claimed], runner, store, suite, idents, bench_id, env,
                    device, cache_dir, wandb, show, counts,
                )  # fmt: skip
                elsewhere = [r for r in elsewhere if _local(store, r.key)]  # other hosts': left to them
                if not elsewhere:
                    break
                # cells another live bench on this store is running: wait for them, and take over
                # those whose bench has died meanwhile (never run a cell twice)
                show(0, f"waiting for {len(elsewhere)} cells another bench on this store is running")
                time.sleep(WAIT_SECONDS)
                before = len(elsewhere)
                claimed, elsewhere = store.claim(elsewhere, owner=owner, finished=FINISHED, alive=owner_alive)
                finished_there = before - len(claimed) - len(elsewhere)
                if finished_there:
                    show(finished_there, f"{finished_there} cells finished by another bench")
        done, failed, diverged = counts["done"], counts["failed"], counts["diverged"]
        wanted = set(keyed.values()) | {r.key for r in not_applicable}
        rows = tuple(r for r in store.rows(suite=suite.name) if r.key in wanted)
    finally:
        store.close()
    ran = done + failed + diverged
    return BenchSummary(
        bench_id=bench_id,
        total=len(keyed),
        ran=ran,
        done=done,
        failed=failed,
        diverged=diverged,
        reused=len(keyed) - ran,
        not_applicable=len(grid.not_applicable),
        skipped_pairs=len(grid.skipped),
        wall_time=time.perf_counter() - started,
        rows=rows,
    )


def stale_reason(row: ResultRow) -> str | None:
    """Why a stored row is not a result of today's code and plugins (None when it is).

    The row's spec is rebuilt and its identity computed again; a different key means the recipe,
    an option, a default, a plugin's version or the core's version changed since it was stored.
    The reason names the parts of the identity that differ.
    """
    if not row.spec or not row.identity:
        return "stored by an older prunekit that recorded no identity"
    device = str(row.identity.get("device", "cpu"))
    try:
        spec = spec_from_payload(row.spec)
        ident = _na_identity(spec, device) if row.status == "not_applicable" else cell_identity(spec, device)
    except (PrunekitError, TypeError, ValueError, KeyError) as err:
        return f"its recipe no longer resolves ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    if ident.key == row.key:
        return None
    parts = sorted(k for k in set(ident.payload) | set(row.identity) if ident.payload.get(k) != row.identity.get(k))
    return "produced by other code, options or plugin versions (differs in: " + ", ".join(parts or ["key"]) + ")"


def mark_stale(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """``rows`` with every row that is not a result of today's code given status ``stale`` and
    the reason as its error (in memory only: the store keeps what it holds). Stale rows are
    shown by reports and never enter statistics, which count ``done`` rows only."""
    out = []
    for row in rows:
        reason = None if row.status == "running" else stale_reason(row)
        out.append(row if reason is None else attrs.evolve(row, status="stale", error=reason))
    return out


def run_until_decided(
    plan: BenchPlan,
    *,
    max_seeds: int = 10,
    time_budget: float | None = None,
    alpha: float | None = None,
    **options: Any,
) -> tuple[BenchSummary, SequentialDesign]:
    """Run the plan's grid, then add seeds only to the (method, check, sparsity) pairs whose verdict is
    still open, one seed at a time, until every pair is decided, ``max_seeds`` are spent, or
    ``time_budget`` seconds have passed (checked between rounds).

    The verdicts follow a :class:`~prunekit.bench.stats.SequentialDesign` fixed before the first
    look (``min_seeds`` = the grid's seeds, which must be 0..n-1 or any n >= 3 seeds; seeds are
    added in increasing order), so each verdict keeps its stated error rate however many times
    it is looked at. Each round runs (:func:`run_plan` with ``options``), for every open pair, its
    clean cell and its check cell at the next seed (cells already stored are reused). Returns the combined summary and the
    design, which is recorded with every bench so `prunekit report` reads the verdicts the same
    way.
    """
    from prunekit.bench.stats import DEFAULT_ALPHA, SequentialDesign, next_seeds, paired_differences

    started = time.perf_counter()
    grid = plan.grid
    seeds = sorted({c.seed for c in grid.cells})
    design = SequentialDesign(
        alpha=DEFAULT_ALPHA if alpha is None else alpha,
        margin=plan.suite.equivalence_margin,
        min_seeds=max(len(seeds), 3),
        max_seeds=max_seeds,
    )
    settings = {"design": attrs.asdict(design)}
    if len(seeds) < 3:
        raise PrunekitError(f"--until-decided starts from at least 3 seeds; the grid has {len(seeds)}")
    if max_seeds < len(seeds):
        raise PrunekitError(f"--max-seeds {max_seeds} is below the grid's {len(seeds)} seeds")
    summaries = [run_plan(plan, settings=settings, **options)]
    rows = {r.key: r for r in summaries[0].rows}
    base = {(c.model, c.method, c.check, c.sparsity): c for c in grid.cells if c.seed == seeds[0]}
    seed, count = seeds[-1] + 1, len(seeds)
    while count < max_seeds:
        if time_budget is not None and time.perf_counter() - started > time_budget:
            break
        open_pairs = next_seeds(paired_differences(list(rows.values())), design)
        if not open_pairs:
            break
        cells: dict[CellSpec, None] = {}
        for _protocol, model, _dataset, method, check, sparsity in sorted(open_pairs):
            for c in (CLEAN_CHECK, check):
                spec = base.get((model, method, c, sparsity))
                if spec is not None:
                    cells[attrs.evolve(spec, seed=seed)] = None
        if not cells:
            break
        summary = run_plan(plan.with_cells(list(cells)), settings=settings, **options)
        summaries.append(summary)
        rows.update({r.key: r for r in summary.rows})
        seed, count = seed + 1, count + 1
    total = BenchSummary(
        bench_id=summaries[0].bench_id,
        total=sum(s.total for s in summaries),
        ran=sum(s.ran for s in summaries),
        done=sum(s.done for s in summaries),
        failed=sum(s.failed for s in summaries),
        diverged=sum(s.diverged for s in summaries),
        reused=sum(s.reused for s in summaries),
        not_applicable=summaries[0].not_applicable,
        skipped_pairs=summaries[0].skipped_pairs,
        wall_time=time.perf_counter() - started,
        rows=tuple(rows.values()),
    )
    return total, design
