"""What one bench will do, checked once before anything is written or trained.

:func:`plan_bench` resolves and checks, in this order, each failure one
:class:`~prunekit.errors.PrunekitError` line with nothing written: the grid (unknown names, an
empty grid, a suite option cells cannot carry), the store path, the executor, the dataset's
files and the trainer's protocol. The :class:`BenchPlan` it returns serves ``--dry-run`` (which
prints it) and the run (:func:`prunekit.bench.runner.run_plan`) alike; the rounds of
``--until-decided`` are the same plan with other cells (:meth:`BenchPlan.with_cells`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from prunekit.bench.executors import Executor, ProcessExecutor
from prunekit.bench.grid import Filters, Grid, estimate_seconds, expand
from prunekit.bench.store import check_db_path
from prunekit.bench.suite import Suite
from prunekit.cell import CellSpec, worker_state
from prunekit.data import DataBundle
from prunekit.errors import PrunekitError
from prunekit.identity import option_pairs
from prunekit.plugins import get_plugins, runtime_plugin_names

CACHE_DIR = ".prunekit-cache"  # dense pre-training, beside the store
AUTO = "auto"  # the executor chosen for the grid (choose_executor)
# a grid estimated to take less than this runs in this process: starting worker processes
# (each imports torch, timm and the plugins) would cost about as much as they save
PARALLEL_FROM_SECONDS = 60.0


@attrs.frozen(kw_only=True)
class ExecutorChoice:
    """What ``--executor auto`` chose for a grid, and why (one line for the terminal)."""

    name: str
    jobs: int
    reason: str
    asked_jobs: int | None = None  # --jobs as given (None: one worker per core or GPU)
    live: bool = False  # the caller streams each cell's epochs (W&B)


def choose_executor(
    suite: Suite, cells: Sequence[CellSpec], device: str, *, jobs: int | None = None, live: bool = False
) -> ExecutorChoice:
    """``--executor auto``: worker processes (``processes``, one per CPU core, or per GPU when
    several are visible) when the grid is long enough to repay starting them, else ``local``.

    ``local`` is kept when: W&B streams each cell live (``live``: only the local executor
    reports epochs as they happen); a plugin was registered at runtime (it exists only in this
    process); ``jobs`` is 1 or one core/GPU is all there is; the suite's
    ``estimated_cell_seconds`` is unknown, or puts the grid under
    :data:`PARALLEL_FROM_SECONDS`."""

    def local(why: str) -> ExecutorChoice:  # --jobs kept as given: the executor refuses a bad one
        return ExecutorChoice(
            name="local", jobs=1 if jobs is None else jobs, reason=f"local ({why})", asked_jobs=jobs, live=live
        )

    if live:
        return local("W&B logs each cell live only from this process")
    runtime = runtime_plugin_names()
    if runtime:
        return local(f"plugin {runtime[0]!r} was registered at runtime and exists only in this process")
    available = jobs if jobs is not None else ProcessExecutor.default_jobs(device)
    unit = "GPU" if device.startswith("cuda") else "CPU core"
    if available < 2:
        return local(f"one {unit}" if jobs is None else f"--jobs {jobs}")
    workers = min(available, len(cells))
    if workers < 2:
        return local("one cell")
    seconds = estimate_seconds(cells, suite.estimated_cell_seconds)
    if seconds is None:
        return local(f"suite {suite.name} gives no estimated_cell_seconds to weigh worker processes against")
    if seconds < PARALLEL_FROM_SECONDS:
        return local(f"about {seconds:.0f} s of cells: worker processes would cost about what they save")
    per = "" if jobs is not None else f", one per {unit}"
    return ExecutorChoice(
        name="processes", jobs=workers, asked_jobs=jobs, live=live,
        reason=f"processes ({workers} workers{per}, for about {seconds:.0f} s of cells run one after another)",
    )  # fmt: skip


@attrs.frozen(kw_only=True)
class BenchPlan:
    """A suite's grid with everything it runs on, each part checked: the store path ``db``,
    the ``executor``, the ``device`` and the suite's dataset (``data``, loaded once)."""

    suite: Suite
    filters: Filters
    grid: Grid
    db: Path
    executor: Executor = attrs.field(eq=False)
    device: str
    data: DataBundle = attrs.field(eq=False, repr=False)
    choice: ExecutorChoice | None = None  # what --executor auto chose (None: the executor was named)
    executor_options: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def cache_dir(self) -> Path:
        """The dense cache's folder, beside the store."""
        return self.db.resolve().parent / CACHE_DIR

    @property
    def estimated_seconds(self) -> float | None:
        return self.grid.estimate_seconds(self.suite.estimated_cell_seconds)

    def with_cells(self, cells: Sequence[CellSpec]) -> BenchPlan:
        """The same plan running ``cells`` instead of its grid (the extra seeds of
        ``--until-decided``: cells of the same suite, data and store). An executor chosen by
        ``auto`` is chosen again for these cells (a short round runs in this process)."""
        plan = attrs.evolve(self, grid=Grid(cells=tuple(cells), skipped=(), not_applicable=()))
        if self.choice is None:
            return plan
        choice = choose_executor(self.suite, cells, self.device, jobs=self.choice.asked_jobs, live=self.choice.live)
        if (choice.name, choice.jobs) == (self.choice.name, self.choice.jobs):
            return attrs.evolve(plan, choice=choice)
        runner = make_executor(choice.name, choice.jobs, self.executor_options, self.device)
        return attrs.evolve(plan, choice=choice, executor=runner)


def make_executor(
    name: str | Executor, jobs: int | None = 1, options: Mapping[str, Any] | None = None, device: str = "cpu"
) -> Executor:
    """An executor instance: a registered name (one-line error with suggestions) or as given.
    ``jobs`` None: the executor's :meth:`~Executor.default_jobs` for ``device``."""
    if isinstance(name, Executor):
        return name
    cls = get_plugins().registry("executor").get(name)
    if jobs is None:
        jobs = cls.default_jobs(device)
    return cls(jobs=jobs, **dict(options or {}))


def check_data(suite: Suite) -> DataBundle:
    """The suite's dataset, loaded into this process's worker state (cells run here reuse it):
    a missing dataset is its one-line error here, before anything is written or trained."""
    return worker_state().data(suite.dataset, suite.data_root, option_pairs(suite.dataset_options))


def check_trainer(suite: Suite) -> None:
    """The suite's trainer exists and can follow its protocol (an optimizer it lacks, a
    precision it cannot do): one line, before anything is written or trained."""
    from prunekit.pipeline import instantiate

    trainer = instantiate("trainer", suite.trainer)
    validate = getattr(trainer, "validate", None)
    if validate is not None:
        validate(suite.protocol)


def plan_bench(
    suite: Suite,
    *,
    db: str | Path,
    filters: Filters = Filters(),
    executor: str | Executor = "local",
    jobs: int | None = None,
    executor_options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    live: bool = False,
) -> BenchPlan:
    """The checked plan of ``suite``'s grid (narrowed by ``filters``) on store ``db``;
    ``data_root`` overrides the suite's. Writes nothing.

    ``executor`` ``"auto"`` (the command line's default): :func:`choose_executor`, with
    ``live`` when the caller streams each cell's epochs (W&B). Here the default is ``local``:
    worker processes are started with ``spawn``, which runs a calling script's top level again
    in each worker, so a script asks for them (``"auto"`` or ``"processes"``) from under
    ``if __name__ == "__main__":``."""
    if data_root is not None:
        suite = attrs.evolve(suite, data_root=data_root)
    grid = expand(suite, filters)
    if suite.scoring:
        raise PrunekitError(
            f"suite {suite.name!r} sets [scoring] overrides ({', '.join(suite.scoring)}), which cells do not "
            "apply yet (CellSpec has no scoring field); remove the table from the suite"
        )
    db_path = check_db_path(db)
    choice = None
    if executor == AUTO:
        choice = choose_executor(suite, grid.cells, device, jobs=jobs, live=live)
        executor, jobs = choice.name, choice.jobs
    runner = make_executor(executor, jobs, executor_options, device)
    data = check_data(suite)
    check_trainer(suite)
    return BenchPlan(
        suite=suite, filters=filters, grid=grid, db=db_path, executor=runner, device=device, data=data,
        choice=choice, executor_options=dict(executor_options or {}),
    )  # fmt: skip
