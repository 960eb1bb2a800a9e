"""Conformance kit: does a plugin's scorer, schedule, check, method, trainer or dataset keep
the contract?

Plugin authors call these from their own tests; each raises :class:`ConformanceError` (an
``AssertionError``) whose message says what was wrong, where (which layer, which tiny model,
which dtype) and what was expected::

    from prunekit.testing import check_method, check_sanity_check, check_schedule, check_scorer

    def test_my_scorer():
        check_scorer("my_scorer")            # a registered name, or the class itself
        check_scorer(MyScorer, rounds=3)     # with options

pytest loads the kit's plugin (:mod:`prunekit.testing.pytest_plugin`, entry point
``pytest11``), so any test can ask for the ``prunekit_conformance`` fixture::

    def test_everything(prunekit_conformance):
        prunekit_conformance.check_plugin("myplugin")  # every object the plugin registered

The kit builds its own tiny models — a conv net with BatchNorm and a linear head, and an MLP —
on the CPU in float32 and float64 (plus CUDA when it is available), and a tiny 3-class dataset
of 8×8 images, and runs the object the way :func:`prunekit.pipeline.prune` does.

One module per contract (:mod:`~prunekit.testing.scorer`, :mod:`~prunekit.testing.schedule`,
:mod:`~prunekit.testing.check`, :mod:`~prunekit.testing.method`,
:mod:`~prunekit.testing.trainer`, :mod:`~prunekit.testing.dataset`), what they share in
:mod:`~prunekit.testing.fixtures`, a whole plugin in :mod:`~prunekit.testing.plugin`. The
names below load on first use, so importing this package imports neither torch nor plugins.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunekit.testing.check import STAGES, check_sanity_check
    from prunekit.testing.dataset import check_dataset
    from prunekit.testing.fixtures import (
        IMAGE_SHAPE,
        NUM_CLASSES,
        ConformanceError,
        tiny_convnet,
        tiny_data,
        tiny_mlp,
    )
    from prunekit.testing.method import METHOD_SPARSITIES, check_method
    from prunekit.testing.plugin import Conformance, check_plugin
    from prunekit.testing.schedule import SCHEDULE_DENSITIES, check_schedule
    from prunekit.testing.scorer import check_scorer
    from prunekit.testing.trainer import TRAINER_CONFIG, TRAINER_SNAPSHOTS, check_trainer

# public name -> the module of the kit that defines it
_HOME = {
    "ConformanceError": "fixtures",
    "IMAGE_SHAPE": "fixtures",
    "NUM_CLASSES": "fixtures",
    "tiny_convnet": "fixtures",
    "tiny_data": "fixtures",
    "tiny_mlp": "fixtures",
    "check_scorer": "scorer",
    "check_schedule": "schedule",
    "SCHEDULE_DENSITIES": "schedule",
    "check_sanity_check": "check",
    "STAGES": "check",
    "check_method": "method",
    "METHOD_SPARSITIES": "method",
    "check_trainer": "trainer",
    "TRAINER_CONFIG": "trainer",
    "TRAINER_SNAPSHOTS": "trainer",
    "check_dataset": "dataset",
    "check_plugin": "plugin",
    "Conformance": "plugin",
}

__all__ = [
    "IMAGE_SHAPE",
    "METHOD_SPARSITIES",
    "NUM_CLASSES",
    "SCHEDULE_DENSITIES",
    "STAGES",
    "TRAINER_CONFIG",
    "TRAINER_SNAPSHOTS",
    "Conformance",
    "ConformanceError",
    "check_dataset",
    "check_method",
    "check_plugin",
    "check_sanity_check",
    "check_schedule",
    "check_scorer",
    "check_trainer",
    "tiny_convnet",
    "tiny_data",
    "tiny_mlp",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
