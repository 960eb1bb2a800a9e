"""Executors run grid cells and hand results back to the driver (which alone writes the store).

An executor is a plugin kind: ``local`` runs cells in this process one after another,
``processes`` runs them in ``jobs`` worker processes (one per GPU when several are visible).
Third parties register cluster back-ends through ``register_executors``: subclass
:class:`Executor`, implement :meth:`Executor.run` with :func:`run_one` on the workers.

Worker processes load plugins the way the driver's environment says (entry points,
``PRUNEKIT_PLUGINS_DIR``); a plugin registered at runtime in the driver
(``prunekit.plugins.register_plugin``) exists only there, so run such cells with ``local``.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import attrs

from prunekit.cell import CellResult, CellSpec, WorkerState, resolve_method_options, worker_state
from prunekit.errors import PrunekitError
from prunekit.identity import plain_options
from prunekit.pipeline import density_steps
from prunekit.plugins import get_plugins
from prunekit.sentinels import CLEAN_CHECK

Outcome = tuple[CellSpec, CellResult | None, str | None]


def error_text(err: BaseException) -> str:
    """``Type: first line of the message (at file:line in function)`` — what a failed cell keeps."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    frames = traceback.extract_tb(err.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return text


class CellEvents(Protocol):
    """What a streaming executor (:attr:`Executor.streams`) reports while a cell runs, in the
    driver's process: the cell starts, each epoch's record from the trainer, and the trained
    masks and model (before the result is handed back). The W&B sink implements it."""

    def started(self, spec: CellSpec) -> None: ...

    def epoch(self, spec: CellSpec, record: dict[str, float]) -> None: ...

    def trained(self, spec: CellSpec, masks: Any, model: Any) -> None: ...


def _streaming(spec: CellSpec, events: CellEvents | None) -> dict[str, Any]:
    """``run_cell``'s callbacks that report ``spec``'s epochs (and trained masks) to ``events``."""
    if events is None:
        return {}
    return {
        "progress": lambda record: events.epoch(spec, record),
        "trained": lambda prepared: events.trained(spec, prepared.masks, prepared.model),
    }


def run_one(
    spec: CellSpec,
    device: str,
    cache_dir: str | None,
    timeout: float | None = None,
    events: CellEvents | None = None,
    state: WorkerState | None = None,
) -> tuple[CellResult | None, str | None]:
    """Run one cell; a raising plugin gives the error text instead of stopping the grid.
    ``timeout`` (seconds) stops a cell that runs longer, which then fails with that reason;
    ``events`` hears each epoch (and the trained masks) as they come. ``state``: what the
    cells of this worker share (default: this process's, :func:`~prunekit.cell.worker_state`),
    with its dense cache in ``cache_dir``."""
    from prunekit.cell import run_cell

    state = worker_state() if state is None else state
    try:
        with time_limit(timeout):
            cache = state.dense_cache(cache_dir)
            return run_cell(spec, device=device, state=state, cache=cache, **_streaming(spec, events)), None
    except Exception as err:  # noqa: BLE001 - any plugin error fails this cell only
        return None, error_text(err)


def run_unit(
    unit: Sequence[CellSpec], device: str, cache_dir: str | None, timeout: float | None = None
) -> list[tuple[CellResult | None, str | None]]:
    """Run the cells of one work unit (:func:`work_units`) one after another in this worker,
    each as :func:`run_one` does (its own error, its own time limit)."""
    return [run_one(spec, device, cache_dir, timeout) for spec in unit]


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the platform says, else all)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def ticket_of(spec: CellSpec) -> CellSpec:
    """The clean run of ``spec``'s method at its sparsity and seed (same model, data and
    protocol, no check): the cells with the same one form a work unit. Those whose check
    reuses the clean ticket (reinit, the layerwise ones) find it in the worker's memory; those
    that prune on other data (random labels, ...) find their own there."""
    return attrs.evolve(spec, check=CLEAN_CHECK, check_options=(), instruments=())


def _trainings(spec: CellSpec) -> int:
    """The trainings a cell of ``spec``'s method may cost: its own, plus the dense pre-training
    and the retraining rounds (IMP) of a ticket found afresh."""
    method = get_plugins().registry("method").get(spec.method)
    method = resolve_method_options(method, plain_options(spec.method_options))
    return 1 + (len(density_steps(method, 1 - spec.sparsity)) if method.pretrain else 0)


def work_units(cells: Sequence[CellSpec]) -> list[list[CellSpec]]:
    """``cells`` grouped into the units a worker runs one after another, in the order to hand
    them out.

    * A unit holds the cells of one ticket (:func:`ticket_of`): the clean run and the checks
      that reuse its ticket then find it once, in one worker's memory, instead of once in
      every worker that happens to get one of them.
    * The most costly units go first (their cells times the trainings each may take: IMP's
      rounds, a ticket's pre-training), so that the last units to finish are short ones and no
      worker waits idle on a long tail.
    * Among equals, seeds take turns, so that workers started together pre-train different
      dense networks instead of waiting on each other's lock for the same one.
    """
    units: dict[CellSpec, list[CellSpec]] = {}
    for spec in cells:
        units.setdefault(ticket_of(spec), []).append(spec)
    turn: dict[CellSpec, int] = {}
    per_seed: dict[tuple[str, int], int] = {}
    for key in units:
        seed = (key.model, key.seed)
        turn[key] = per_seed.get(seed, 0)
        per_seed[seed] = turn[key] + 1
    cost = {key: len(unit) * _trainings(key) for key, unit in units.items()}
    order = sorted(units, key=lambda key: (-cost[key], turn[key]))  # stable: grid order among equals
    return [units[key] for key in order]


class CellTimeoutError(Exception):
    """A cell ran past the per-cell time limit (``prunekit bench --cell-timeout``)."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CellTimeoutError` in this thread after ``seconds`` (POSIX timers, main
    thread only: elsewhere, or on a platform without SIGALRM, no limit is enforced)."""
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if seconds is None or not usable:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CellTimeoutError(f"the cell ran longer than its limit of {seconds:g} s (--cell-timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


class Executor(abc.ABC):
    """Runs cells; yields ``(spec, result, error)`` as each one finishes.

    ``result`` is None exactly when ``error`` is the text of what the cell raised. Every given
    spec must come back once (the very object given). ``in_order`` executors yield in the order
    given, one cell at a time, so the driver can show which cell is running.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    in_order: ClassVar[bool] = False
    # streams: run() takes ``events`` (a :class:`CellEvents`) and reports each cell's start and
    # epochs as they happen, in the driver's process (live W&B runs); others report at the end
    streams: ClassVar[bool] = False

    def __init__(self, jobs: int = 1, cell_timeout: float | None = None, **options: Any) -> None:
        if jobs < 1:
            raise PrunekitError(f"--jobs must be at least 1, got {jobs}")
        if cell_timeout is not None and not cell_timeout > 0:
            raise PrunekitError(f"--cell-timeout must be a number of seconds > 0, got {cell_timeout}")
        self.jobs = jobs
        self.cell_timeout = cell_timeout  # seconds a cell may run (None: no limit)
        self.options = options

    @classmethod
    def default_jobs(cls, device: str) -> int:
        """Workers when ``--jobs`` is not given, for cells on ``device``. Default: one."""
        return 1

    def connect(self) -> None:  # noqa: B027 - optional: most executors have nothing to open
        """Open what the executor needs before any cell is claimed (a connection to a cluster).
        :func:`~prunekit.bench.runner.run_bench` calls it before it opens the store, so that a
        connection that fails leaves the store untouched; raise a one-line
        :class:`~prunekit.errors.PrunekitError` naming the option to fix. Default: nothing."""

    @abc.abstractmethod
    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]: ...


class LocalExecutor(Executor):
    name: ClassVar[str] = "local"
    description: ClassVar[str] = "in this process, one cell after another"
    in_order: ClassVar[bool] = True
    streams: ClassVar[bool] = True

    def __init__(self, jobs: int = 1, state: WorkerState | None = None, **options: Any) -> None:
        """``state``: what the cells it runs share (default: this process's worker state, which
        also holds the dataset the bench loaded to check it)."""
        super().__init__(jobs=jobs, **options)
        self.state = state

    def run(
        self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None, events: CellEvents | None = None
    ) -> Iterator[Outcome]:
        folder = str(cache_dir) if cache_dir else None
        for spec in cells:
            if events is not None:
                events.started(spec)
            result, error = run_one(spec, device, folder, self.cell_timeout, events, self.state)
            yield spec, result, error


def _init_worker(slots: Any, threads: int) -> None:
    """Pin this worker to one GPU (when there are several) and share the CPU cores."""
    import torch

    slot = slots.get()
    if slot is not None:  # before anything touches CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot)
    torch.set_num_threads(threads)


class ProcessExecutor(Executor):
    name: ClassVar[str] = "processes"
    description: ClassVar[str] = "--jobs N worker processes on this machine (one per GPU when several are visible)"

    @classmethod
    def default_jobs(cls, device: str) -> int:
        """One worker per GPU when several are visible to ``cuda`` (no index), per CPU core on
        the CPU, else one."""
        if device == "cuda":
            import torch

            return max(torch.cuda.device_count(), 1)
        return cpu_cores() if device == "cpu" else 1

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        import torch

        ctx = mp.get_context("spawn")
        # device "cuda" (no index) with several GPUs: worker i gets GPU i mod count as its only GPU
        gpus = torch.cuda.device_count() if device == "cuda" else 0
        slots = ctx.SimpleQueue()
        for i in range(self.jobs):
            slots.put(str(i % gpus) if gpus > 1 else None)
        threads = max(1, cpu_cores() // self.jobs)
        folder = str(cache_dir) if cache_dir else None
        pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots, threads))
        with pool:
            futures = {
                pool.submit(run_unit, unit, device, folder, self.cell_timeout): unit for unit in work_units(cells)
            }
            try:
                for future in as_completed(futures):
                    unit = futures[future]
                    try:
                        outcomes = future.result()
                    except Exception as err:  # noqa: BLE001 - the worker died (killed, out of memory)
                        outcomes = [(None, f"the worker process died: {error_text(err)}")] * len(unit)
                    for spec, (result, error) in zip(unit, outcomes, strict=True):
                        yield spec, result, error
            finally:
                for future in futures:
                    future.cancel()
