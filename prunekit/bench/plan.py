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

from prunekit.bench.executors import Executor
from prunekit.bench.grid import Filters, Grid, expand
from prunekit.bench.store import check_db_path
from prunekit.bench.suite import Suite
from prunekit.cell import CellSpec, worker_state
from prunekit.data import DataBundle
from prunekit.errors import PrunekitError
from prunekit.identity import option_pairs
from prunekit.plugins import get_plugins

CACHE_DIR = ".prunekit-cache"  # dense pre-training, beside the store


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

    @property
    def cache_dir(self) -> Path:
        """The dense cache's folder, beside the store."""
        return self.db.resolve().parent / CACHE_DIR

    @property
    def estimated_seconds(self) -> float | None:
        return self.grid.estimate_seconds(self.suite.estimated_cell_seconds)

    def with_cells(self, cells: Sequence[CellSpec]) -> BenchPlan:
        """The same plan running ``cells`` instead of its grid (the extra seeds of
        ``--until-decided``: cells of the same suite, data and store)."""
        return attrs.evolve(self, grid=Grid(cells=tuple(cells), skipped=(), not_applicable=()))


def make_executor(name: str | Executor, jobs: int = 1, options: Mapping[str, Any] | None = None) -> Executor:
    """An executor instance: a registered name (one-line error with suggestions) or as given."""
    if isinstance(name, Executor):
        return name
    cls = get_plugins().registry("executor").get(name)
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
    jobs: int = 1,
    executor_options: Mapping[str, Any] | None = None,
    device: str = "cpu",
    data_root: str | None = None,
) -> BenchPlan:
    """The checked plan of ``suite``'s grid (narrowed by ``filters``) on store ``db``;
    ``data_root`` overrides the suite's. Writes nothing."""
    if data_root is not None:
        suite = attrs.evolve(suite, data_root=data_root)
    grid = expand(suite, filters)
    if suite.scoring:
        raise PrunekitError(
            f"suite {suite.name!r} sets [scoring] overrides ({', '.join(suite.scoring)}), which cells do not "
            "apply yet (CellSpec has no scoring field); remove the table from the suite"
        )
    db_path = check_db_path(db)
    runner = make_executor(executor, jobs, executor_options)
    data = check_data(suite)
    check_trainer(suite)
    return BenchPlan(suite=suite, filters=filters, grid=grid, db=db_path, executor=runner, device=device, data=data)
