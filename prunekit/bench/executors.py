"""Executors run grid cells and hand results back to the driver (which alone writes the store).

An executor is a plugin kind: ``local`` runs cells in this process one after another,
``processes`` runs them in ``jobs`` worker processes (one per GPU when several are visible).
Third parties register cluster back-ends through ``register_executors``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from prunekit.cell import CellResult, CellSpec

Outcome = tuple[CellSpec, CellResult | None, str | None]


def run_one(spec: CellSpec, device: str, cache_dir: str | None) -> tuple[CellResult | None, str | None]:
    """Run one cell; a raising plugin gives the error text instead of stopping the grid."""
    from prunekit.cell import run_cell

    try:
        return run_cell(spec, device=device, cache=_cache(cache_dir)), None
    except Exception as err:  # noqa: BLE001 - any plugin error fails this cell only
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return None, f"{type(err).__name__}: {first}"


_CACHES: dict[str | None, object] = {}


def _cache(cache_dir: str | None):  # type: ignore[no-untyped-def]
    from prunekit.dense import DenseCache

    if cache_dir not in _CACHES:
        _CACHES[cache_dir] = DenseCache(cache_dir)
    return _CACHES[cache_dir]


class Executor(abc.ABC):
    """Runs cells; yields ``(spec, result, error)`` as each one finishes."""

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, jobs: int = 1, **options: object) -> None:
        if jobs < 1:
            from prunekit.errors import PrunekitError

            raise PrunekitError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.options = options

    @abc.abstractmethod
    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]: ...


class LocalExecutor(Executor):
    name: ClassVar[str] = "local"
    description: ClassVar[str] = "in this process, one cell after another"

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        for spec in cells:
            result, error = run_one(spec, device, str(cache_dir) if cache_dir else None)
            yield spec, result, error


def _init_worker(slots: object, threads: int) -> None:
    """Pin this worker to one GPU (when there are several) and share the CPU cores."""
    import torch

    slot = slots.get()  # type: ignore[attr-defined]
    if slot is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot)
    torch.set_num_threads(threads)


class ProcessExecutor(Executor):
    name: ClassVar[str] = "processes"
    description: ClassVar[str] = "--jobs N worker processes on this machine (one per GPU when several are visible)"

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        import torch

        ctx = mp.get_context("spawn")
        slots = ctx.Manager().Queue()
        gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
        for i in range(self.jobs):
            slots.put(i % gpus if gpus > 1 else None)
        worker_device = "cuda" if gpus > 1 else device
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        with ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots, threads)) as pool:
            futures = {
                pool.submit(run_one, spec, worker_device, str(cache_dir) if cache_dir else None): spec for spec in cells
            }
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    result, error = future.result()
                except Exception as err:  # a worker died
                    result, error = None, f"{type(err).__name__}: {err}"
                yield spec, result, error
