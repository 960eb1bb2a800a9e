"""What an executor plugin needs: the cells it is handed and the ways to run them.

An executor (``register_executors``) subclasses :class:`Executor` and yields one
:class:`Outcome` per cell. It hands its workers the units of :func:`work_units` (the cells that
share a ticket, costliest first), which a worker runs with :func:`run_unit`; a single cell runs
with :func:`run_one` (a cell that raises becomes its error text), or in two halves —
:func:`prepare_cell` (prune) and :func:`finish_cell` (after its own training) — when the
executor trains several cells together. Each
worker passes its :class:`WorkerState` (:func:`worker_state`: the process's own) so cells share
datasets, tickets and dense pre-training. See docs/plugins.md.
"""

from __future__ import annotations

from prunekit.bench.executors import (
    CellEvents,
    CellTimeoutError,
    Executor,
    LocalExecutor,
    Outcome,
    ProcessExecutor,
    cpu_cores,
    error_text,
    run_one,
    run_unit,
    ticket_of,
    time_limit,
    work_units,
)
from prunekit.cell import (
    CellResult,
    CellSpec,
    PreparedCell,
    WorkerState,
    finish_cell,
    prepare_cell,
    run_cell,
    worker_state,
)

__all__ = [
    "CellEvents",
    "CellResult",
    "CellSpec",
    "CellTimeoutError",
    "Executor",
    "LocalExecutor",
    "Outcome",
    "PreparedCell",
    "ProcessExecutor",
    "WorkerState",
    "cpu_cores",
    "error_text",
    "finish_cell",
    "prepare_cell",
    "run_cell",
    "run_one",
    "run_unit",
    "ticket_of",
    "time_limit",
    "work_units",
    "worker_state",
]
