"""The ``batched`` executor: cells that share a model, data and protocol train as one.

Each cell is pruned on its own (:func:`prunekit.cell.prepare_cell`: scoring, dense pre-training
from the shared cache, its check), then up to ``members`` prepared cells of the same model,
data, protocol and trainer are trained together by the batched trainer
(:func:`prunekit_plugins.batched.fit_many`): one stacked model, every member's masks enforced
exactly as the ``sgd`` trainer does, each member's numbers equal to its solo run up to the
order of float summation. On a CPU, where small models are bound by per-operation overhead,
this trains several cells for little more than the cost of one.

Cells the batched trainer cannot take (another trainer, a protocol with gradient clipping,
accumulation or mixed precision, a model whose members cannot be stacked) are trained one at a
time, as the ``local`` executor does. A member that diverges gets its own ``DivergedError``; the
others train on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from prunekit import DivergedError, Executor, Outcome, PrunekitError, hookimpl
from prunekit.executing import (
    CellSpec,
    PreparedCell,
    error_text,
    finish_cell,
    prepare_cell,
    time_limit,
    worker_state,
)

SOLO_TRAINERS_ONLY = "the batched trainer takes the sgd trainer's protocols only"


class BatchedExecutor(Executor):
    """Prunes cells one by one and trains those that share everything but seed, masks and
    initial weights together (``--jobs`` is ignored; ``members`` caps a batch)."""

    name: ClassVar[str] = "batched"
    description: ClassVar[str] = (
        "in this process; cells of one model, data and protocol train together as one stacked model"
    )
    in_order: ClassVar[bool] = False

    def __init__(self, jobs: int = 1, members: int = 16, **options: Any) -> None:
        super().__init__(jobs=jobs, **options)
        if members < 1:
            raise PrunekitError(f"members must be at least 1, got {members}")
        self.members = members

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        state = worker_state()
        cache = state.dense_cache(str(cache_dir) if cache_dir else None)
        groups: dict[tuple[Any, ...], list[CellSpec]] = {}
        for spec in cells:
            groups.setdefault(_group_key(spec), []).append(spec)
        for group in groups.values():
            for first in range(0, len(group), self.members):
                yield from self._batch(group[first : first + self.members], device, state, cache)

    def _batch(self, specs: Sequence[CellSpec], device: str, state: Any, cache: Any) -> Iterator[Outcome]:
        prepared: list[tuple[PreparedCell, float]] = []
        for spec in specs:
            began = time.perf_counter()
            try:
                with time_limit(self.cell_timeout):  # pruning per cell; shared training is not limited
                    cell = prepare_cell(spec, device=device, state=state, cache=cache)
            except Exception as err:  # noqa: BLE001 - a plugin error fails this cell only
                yield spec, None, error_text(err)
                continue
            prepared.append((cell, time.perf_counter() - began))
        together: dict[int, list[tuple[PreparedCell, float]]] = {}
        for cell, seconds in prepared:
            if _batchable(cell):
                together.setdefault(cell.start_step, []).append((cell, seconds))
            else:
                yield _solo(cell, device)
        for start, members in together.items():
            if len(members) == 1:
                yield _solo(members[0][0], device)
                continue
            yield from _train_together(members, start, device)


def _group_key(spec: CellSpec) -> tuple[Any, ...]:
    """What cells must share to train together."""
    return (
        spec.model, spec.model_options, spec.dataset, spec.dataset_options, spec.data_root,
        spec.protocol, spec.trainer,
    )  # fmt: skip


def _batchable(cell: PreparedCell) -> bool:
    from prunekit_plugins.batched import check_config

    if cell.trainer.name != "sgd":
        return False
    try:
        check_config(cell.spec.protocol)
    except (PrunekitError, ValueError):
        return False
    return True


def _solo(cell: PreparedCell, device: str) -> Outcome:
    """Train one prepared cell with its own trainer (as the local executor does)."""
    try:
        result = cell.trainer.fit(
            cell.model, cell.data, cell.spec.protocol, masks=cell.masks, seed=cell.spec.seed,
            device=torch.device(device), **({"start_step": cell.start_step} if cell.start_step else {}),
        )  # fmt: skip
        return cell.spec, finish_cell(cell, result), None
    except Exception as err:  # noqa: BLE001 - a plugin error fails this cell only
        return cell.spec, None, error_text(err)


def _train_together(members: Sequence[tuple[PreparedCell, float]], start: int, device: str) -> Iterator[Outcome]:
    from prunekit_plugins.batched import fit_many

    cells = [cell for cell, _ in members]
    try:
        results = fit_many(
            [c.model for c in cells], cells[0].data, cells[0].spec.protocol,
            masks=[c.masks for c in cells], seeds=[c.spec.seed for c in cells],
            device=device, start_step=start,
        )  # fmt: skip
    except (PrunekitError, ValueError):  # members that cannot be stacked: one at a time
        for cell in cells:
            yield _solo(cell, device)
        return
    except Exception as err:  # noqa: BLE001 - the whole batch failed: each cell says why
        for cell in cells:
            yield cell.spec, None, error_text(err)
        return
    for (cell, prep_seconds), result in zip(members, results):
        if isinstance(result, DivergedError):
            yield cell.spec, None, f"DivergedError: {result}"
        else:
            yield cell.spec, finish_cell(cell, result, train_seconds=prep_seconds + result.wall_time), None


@hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(BatchedExecutor)
