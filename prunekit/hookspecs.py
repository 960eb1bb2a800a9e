"""The plugin contract: pluggy hook specifications of project ``prunekit``.

Each ``register_*`` hook receives a ``register`` callable; call it once per object::

    register(obj, name=None, description=None)

``name`` defaults to ``obj.name`` and ``description`` to ``obj.description`` (or the first line
of its docstring). Scorers, schedules, checks, trainers, datasets and executors are registered
as classes (instruments too); methods as :class:`~prunekit.interfaces.Method` instances; suites as
:class:`~prunekit.bench.suite.Suite` instances or paths to TOML files.

Models are registered into timm's own registry (``timm.models.register_model``) when the
plugin module is imported; ``register_models`` reports their names so prunekit can list them.

Every ``register_*`` hook but ``register_commands`` belongs to one kind of
:data:`prunekit.kinds.KINDS` (its registry, interface, CLI words and conformance check); a new
hook needs its Kind there.

A plugin module may set ``PRUNEKIT_HOOKSPEC_VERSION`` to the major version it was built for;
a plugin whose major version differs from :data:`HOOKSPEC_VERSION` is reported, not loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "prunekit"
# 2: SanityCheck declares ``stages`` (not ``stage``) and ``refuses`` (``not_applicable`` is the
# core's); Trainer.fit takes ``callbacks`` in place of snapshot_steps, checkpoint and progress
HOOKSPEC_VERSION = 2

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def register_scorers(register: Register) -> None:
    """Register :class:`~prunekit.interfaces.Scorer` subclasses."""


@hookspec
def register_ratio_schedules(register: Register) -> None:
    """Register :class:`~prunekit.interfaces.RatioSchedule` subclasses."""


@hookspec
def register_sanity_checks(register: Register) -> None:
    """Register :class:`~prunekit.interfaces.SanityCheck` subclasses."""


@hookspec
def register_trainers(register: Register) -> None:
    """Register :class:`~prunekit.interfaces.Trainer` subclasses."""


@hookspec
def register_methods(register: Register) -> None:
    """Register :class:`~prunekit.interfaces.Method` recipes."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`~prunekit.interfaces.Dataset` subclasses."""


@hookspec
def register_suites(register: Register) -> None:
    """Register benchmark suites (Suite objects or TOML paths)."""


@hookspec
def register_executors(register: Register) -> None:
    """Register benchmark executors (classes that run grid cells)."""


@hookspec
def register_instruments(register: Register) -> None:
    """Register :class:`~prunekit.instruments.Instrument` subclasses (measurements of a cell
    beyond its accuracy: instability, gradient flow, ...)."""


@hookspec
def register_models(register: Register) -> None:
    """Report the names of the models this plugin registered into timm: ``register(name)``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``prunekit`` click group."""
