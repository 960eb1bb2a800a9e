"""Dense pre-training with rewinding points, computed once and shared.

A :class:`DenseRun` holds θ₀, θ_k (after ``k`` steps) and θ_T of one dense training of a
(model, data, protocol, seed, pruning-data perturbation). :class:`DenseCache` keeps them on disk
under a content hash of everything that determines them, so every method and check that needs
the same dense run reuses it; a file lock makes two processes asking for the same run compute
it once. Which states are kept does not change the training, so it is not part of the key: a
stored run that lacks a wanted rewinding point is trained again keeping both sets of states.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from prunekit.atomic import atomic_path, load_plain

State = dict[str, torch.Tensor]


@attrs.frozen(kw_only=True, eq=False)
class DenseRun:
    """States of a dense training: ``states[0]`` = θ₀, ``states[k]``, and ``final`` = θ_T."""

    states: Mapping[int, State]
    final: State
    steps: int
    final_accuracy: float
    best_accuracy: float

    def at(self, step: int) -> State:
        if step >= self.steps:
            return self.final
        return self.states[step]


def rewind_step(point: float, total_steps: int) -> int:
    """A rewinding point as a step: values below 1 are fractions of training, others steps."""
    if point < 1.0:
        return round(point * total_steps)
    return min(int(point), total_steps)


def cache_key(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads) on ``path`` (portable: filelock)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


class DenseCache:
    """Dense runs on disk (``<root>/dense-<key>.pt``), or in memory when ``root`` is None.

    ``hits`` and ``misses`` count lookups in this process.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self._memory: dict[str, DenseRun] = {}
        self.hits = 0
        self.misses = 0

    def get_or_compute(
        self,
        spec: Mapping[str, Any],
        compute: Callable[..., DenseRun],
        snapshots: Sequence[int] | None = None,
    ) -> DenseRun:
        """The run of ``spec``: from memory, from disk, or ``compute``-d (and stored).

        Without ``snapshots``, ``compute()`` is called on a miss. With ``snapshots``, a stored
        run counts as a hit only when it kept the state after every one of those steps (or has
        fewer steps); otherwise ``compute(steps)`` trains again keeping ``steps`` = the wanted
        ones and those the stored run had, and the new run replaces it.
        """
        key = cache_key(spec)
        wanted = None if snapshots is None else sorted({int(s) for s in snapshots})
        known = self._memory.get(key)
        if known is not None and _covers(known, wanted):
            self.hits += 1
            return known
        if self.root is None:
            self.misses += 1
            run = _compute(compute, wanted, known)
            self._memory[key] = run
            return run
        path = self.root / f"dense-{key}.pt"
        with _locked(self.root / f"dense-{key}.lock"):
            stored = _load(path) if path.is_file() else None
            if stored is not None and _covers(stored, wanted):
                self.hits += 1
                run = stored
            else:
                self.misses += 1
                run = _compute(compute, wanted, stored or known)
                with atomic_path(path) as tmp:
                    torch.save(
                        {
                            "states": {str(k): v for k, v in run.states.items()},
                            "final": run.final,
                            "steps": run.steps,
                            "final_accuracy": run.final_accuracy,
                            "best_accuracy": run.best_accuracy,
                            "spec": json.dumps(dict(spec), sort_keys=True, default=str),
                        },
                        tmp,
                    )
        self._memory[key] = run
        return run


def _covers(run: DenseRun, wanted: Sequence[int] | None) -> bool:
    """Whether ``run`` kept every wanted state (steps at or past its end are its final state)."""
    return wanted is None or all(s in run.states or s >= run.steps for s in wanted)


def _compute(
    compute: Callable[..., DenseRun], wanted: Sequence[int] | None, old: DenseRun | None
) -> DenseRun:
    """``compute()``, or ``compute(steps)`` keeping the wanted states and those ``old`` kept."""
    if wanted is None:
        return compute()
    keep = set(wanted) | (set(old.states) if old is not None else set())
    return compute(sorted(keep))


def _load(path: Path) -> DenseRun:
    """A stored run, read with ``weights_only=True``: a file that would unpickle anything but
    tensors and plain data (and so could run code) is refused with one line."""
    from prunekit.errors import PrunekitError

    saved = load_plain(path, what="dense-cache file", nothing="no cache file", remedy="recompute the run")
    fields = {"states", "final", "steps", "final_accuracy", "best_accuracy"}
    if not isinstance(saved, dict) or not fields <= set(saved):
        raise PrunekitError(f"{path} is not a prunekit dense-cache file; delete it to recompute the run")
    return DenseRun(
        states={int(k): v for k, v in saved["states"].items()},
        final=saved["final"],
        steps=int(saved["steps"]),
        final_accuracy=float(saved["final_accuracy"]),
        best_accuracy=float(saved["best_accuracy"]),
    )
