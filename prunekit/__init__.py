"""prunekit: pruning at initialization, sanity-checked.

The public facade; everything else is an implementation detail. ``import prunekit as pk``
gives what a notebook, a script or a plugin needs (docs/api.md, docs/plugins.md):

* :func:`prune` — masks for any ``nn.Module`` (a timm model or your own) at a sparsity, with a
  method (or a scorer and a schedule) and optionally a sanity check, from your ``DataLoader``
  or tensors;
* :class:`Masks` — apply them, enforce them after every step of your own training loop
  (``masks.enforcer(model, optimizer)``), save and load them;
* :func:`benchmark` — run a benchmark suite; its cells come back as a :class:`Results` table;
* :func:`names` — what is installed (methods, checks, suites, ...);
* the plugin contract: :data:`hookimpl` (and :data:`Register`, the ``register`` callable every
  ``register_*`` hook receives), the interfaces a plugin implements (:class:`Scorer`,
  :class:`RatioSchedule`, :class:`SanityCheck`, :class:`Trainer`, :class:`Dataset`,
  :class:`Executor`, :class:`Instrument`; :class:`Method` recipes and :class:`Suite` objects),
  the types they receive and return (:class:`ScoringContext`, :class:`DataRequest`,
  :class:`TicketContext`, :class:`PrunableLayer`, :class:`DataBundle`, :class:`TrainConfig`,
  :class:`TrainResult`, ...), the training callbacks ``Trainer.fit`` runs (:class:`TrainCallback`,
  :class:`TrainRun`; the built-ins :class:`Snapshots`, :class:`Progress`, :class:`Checkpoint`)
  and the errors (:class:`PrunekitError` and its kin);
* helpers for plugins of each kind: :mod:`prunekit.scoring` (scorers), :mod:`prunekit.data`
  (datasets, trainers and checks: seeded generators, stratified splits, batches and
  augmentation), :mod:`prunekit.instruments` (instruments), :mod:`prunekit.executing`
  (executors), and here :func:`noop_field` (an option added without changing stored results),
  :func:`instantiate` / :func:`lookup` (another registered plugin), :func:`digest` and
  :func:`atomic_path`.

Names load on first use, so ``import prunekit`` (and ``prunekit --version``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from prunekit import data, executing, instruments, scoring
    from prunekit.api import Results, benchmark, lookup, names, prune
    from prunekit.atomic import atomic_path
    from prunekit.bench.executors import Executor, Outcome
    from prunekit.bench.suite import Suite, load_suite
    from prunekit.callbacks import Checkpoint, Progress, Snapshots, TrainCallback, TrainRun
    from prunekit.data import ArrayData, DataBundle
    from prunekit.errors import DataNotFoundError, DivergedError, PrunekitError
    from prunekit.hookspecs import HOOKSPEC_VERSION, Register, hookimpl
    from prunekit.identity import digest, noop_field
    from prunekit.instruments import Curve, Instrument, InstrumentContext, Measurement
    from prunekit.interfaces import (
        FAMILIES,
        DataRequest,
        Dataset,
        Family,
        Method,
        RatioSchedule,
        Rewind,
        SanityCheck,
        Scorer,
        ScoringContext,
        Stage,
        TicketContext,
        TrainConfig,
        Trainer,
        TrainResult,
    )
    from prunekit.layers import PrunableLayer, prunable_layers
    from prunekit.masks import MaskEnforcer, Masks
    from prunekit.pipeline import instantiate
    from prunekit.sentinels import CLEAN_CHECK, DENSE_METHOD

# public name -> the module that defines it (the TYPE_CHECKING imports above say the same)
_EXPORTS: dict[str, str] = {
    # use
    "prune": "prunekit.api",
    "benchmark": "prunekit.api",
    "names": "prunekit.api",
    "Results": "prunekit.api",
    "instantiate": "prunekit.pipeline",
    "lookup": "prunekit.api",
    "Masks": "prunekit.masks",
    "MaskEnforcer": "prunekit.masks",
    # the plugin contract: hooks and the interfaces they register
    "hookimpl": "prunekit.hookspecs",
    "Register": "prunekit.hookspecs",
    "HOOKSPEC_VERSION": "prunekit.hookspecs",
    "Scorer": "prunekit.interfaces",
    "RatioSchedule": "prunekit.interfaces",
    "SanityCheck": "prunekit.interfaces",
    "Trainer": "prunekit.interfaces",
    "Dataset": "prunekit.interfaces",
    "Method": "prunekit.interfaces",
    "Executor": "prunekit.bench.executors",
    "Instrument": "prunekit.instruments",
    "Suite": "prunekit.bench.suite",
    "load_suite": "prunekit.bench.suite",
    "TrainCallback": "prunekit.callbacks",
    # what the interfaces receive and return
    "DataRequest": "prunekit.interfaces",
    "ScoringContext": "prunekit.interfaces",
    "TicketContext": "prunekit.interfaces",
    "TrainConfig": "prunekit.interfaces",
    "TrainResult": "prunekit.interfaces",
    "TrainRun": "prunekit.callbacks",
    "Snapshots": "prunekit.callbacks",
    "Progress": "prunekit.callbacks",
    "Checkpoint": "prunekit.callbacks",
    "Stage": "prunekit.interfaces",
    "Family": "prunekit.interfaces",
    "FAMILIES": "prunekit.interfaces",
    "Rewind": "prunekit.interfaces",
    "CLEAN_CHECK": "prunekit.sentinels",
    "DENSE_METHOD": "prunekit.sentinels",
    "InstrumentContext": "prunekit.instruments",
    "Measurement": "prunekit.instruments",
    "Curve": "prunekit.instruments",
    "Outcome": "prunekit.bench.executors",
    "PrunableLayer": "prunekit.layers",
    "prunable_layers": "prunekit.layers",
    "DataBundle": "prunekit.data",
    "ArrayData": "prunekit.data",
    # helpers for plugins
    "noop_field": "prunekit.identity",
    "digest": "prunekit.identity",
    "atomic_path": "prunekit.atomic",
    # errors
    "PrunekitError": "prunekit.errors",
    "DataNotFoundError": "prunekit.errors",
    "DivergedError": "prunekit.errors",
}
_SUBMODULES = frozenset({"scoring", "data", "instruments", "executing"})

# every name above, and the submodules (a test keeps the three lists in step)
__all__ = [
    "CLEAN_CHECK",
    "DENSE_METHOD",
    "FAMILIES",
    "HOOKSPEC_VERSION",
    "ArrayData",
    "Checkpoint",
    "Curve",
    "DataBundle",
    "DataNotFoundError",
    "DataRequest",
    "Dataset",
    "DivergedError",
    "Executor",
    "Family",
    "Instrument",
    "InstrumentContext",
    "MaskEnforcer",
    "Masks",
    "Measurement",
    "Method",
    "Outcome",
    "Progress",
    "PrunableLayer",
    "PrunekitError",
    "RatioSchedule",
    "Register",
    "Results",
    "Rewind",
    "SanityCheck",
    "Scorer",
    "ScoringContext",
    "Snapshots",
    "Stage",
    "Suite",
    "TicketContext",
    "TrainCallback",
    "TrainConfig",
    "TrainResult",
    "TrainRun",
    "Trainer",
    "__version__",
    "atomic_path",
    "benchmark",
    "data",
    "digest",
    "executing",
    "hookimpl",
    "instantiate",
    "instruments",
    "load_suite",
    "lookup",
    "names",
    "noop_field",
    "prunable_layers",
    "prune",
    "scoring",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"prunekit.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prunekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
