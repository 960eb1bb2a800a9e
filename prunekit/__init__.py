"""prunekit: pruning at initialization, sanity-checked.

The public facade; everything else is an implementation detail. ``import prunekit as pk``
gives what a notebook or a script needs (docs/api.md):

* :func:`prune` — masks for any ``nn.Module`` (a timm model or your own) at a sparsity, with a
  method (or a scorer and a schedule) and optionally a sanity check, from your ``DataLoader``
  or tensors;
* :class:`Masks` — apply them, enforce them after every step of your own training loop
  (``masks.enforcer(model, optimizer)``), save and load them;
* :func:`benchmark` — run a benchmark suite; its cells come back as a :class:`Results` table;
* :func:`names` — what is installed (methods, checks, suites, ...).

Names load on first use, so ``import prunekit`` (and ``prunekit --version``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from prunekit.api import Results as Results
    from prunekit.api import benchmark as benchmark
    from prunekit.api import names as names
    from prunekit.api import prune as prune
    from prunekit.errors import PrunekitError as PrunekitError
    from prunekit.hookspecs import hookimpl as hookimpl
    from prunekit.interfaces import TrainConfig as TrainConfig
    from prunekit.masks import MaskEnforcer as MaskEnforcer
    from prunekit.masks import Masks as Masks

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Masks": "prunekit.masks",
    "MaskEnforcer": "prunekit.masks",
    "PrunekitError": "prunekit.errors",
    "TrainConfig": "prunekit.interfaces",
    "hookimpl": "prunekit.hookspecs",
    "prune": "prunekit.api",
    "benchmark": "prunekit.api",
    "names": "prunekit.api",
    "Results": "prunekit.api",
}

__all__ = [
    "MaskEnforcer",
    "Masks",
    "PrunekitError",
    "Results",
    "TrainConfig",
    "__version__",
    "benchmark",
    "hookimpl",
    "names",
    "prune",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prunekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
