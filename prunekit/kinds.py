"""The kinds of objects plugins register, in one table.

Each :class:`Kind` ties together what is spread over the code: the registry's name
(``ratio_schedule``), the hook that registers it (``register_ratio_schedules`` in
:mod:`prunekit.hookspecs`), what a plugin registers (the interface, e.g.
:class:`~prunekit.interfaces.RatioSchedule`), the words ``prunekit list`` accepts for it
(``ratio_schedule``, ``ratio_schedules``, ``schedule``, ``schedules``) and the conformance
kit's check of it (:func:`prunekit.testing.check_schedule`). The plugin manager fills one
registry per kind from its hook, the CLI and shell completion take their words from here, and
the kit's ``check_plugin`` dispatches on it.

Interfaces and checks are named as ``"module:attribute"`` and imported on first use, so this
module (read by ``prunekit --help``) imports neither torch nor the kit.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from prunekit.errors import PrunekitError


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@attrs.frozen(kw_only=True)
class Kind:
    """One kind of registered object."""

    name: str  # the registry's name: `prunekit list` shows it, plugins.registry(name) holds them
    hook: str  # the hook of prunekit.hookspecs that registers it
    label: str  # the short word of messages and of the CLI ("schedule", "check")
    interface: str | None  # "module:Class" every registered object is (or subclasses); None: names
    contract: str | None = None  # "module:function" of the conformance kit that checks one object

    @property
    def title(self) -> str:
        """The kind in words, as registry errors say it ("ratio schedule")."""
        return self.name.replace("_", " ")

    @property
    def words(self) -> tuple[str, ...]:
        """What the command line accepts for it: name and label, singular and plural."""
        return tuple(dict.fromkeys((self.name, f"{self.name}s", self.label, f"{self.label}s")))

    def interface_class(self) -> type | None:
        """The class a registered object is (a Method, a Suite) or subclasses (a Scorer, ...)."""
        return None if self.interface is None else _load(self.interface)

    def contract_check(self) -> Callable[..., Any] | None:
        """The kit's check of one registered object of this kind (by name), if there is one."""
        return None if self.contract is None else _load(self.contract)


KINDS: tuple[Kind, ...] = (
    Kind(
        name="scorer",
        hook="register_scorers",
        label="scorer",
        interface="prunekit.interfaces:Scorer",
        contract="prunekit.testing.scorer:check_scorer",
    ),
    Kind(
        name="ratio_schedule",
        hook="register_ratio_schedules",
        label="schedule",
        interface="prunekit.interfaces:RatioSchedule",
        contract="prunekit.testing.schedule:check_schedule",
    ),
    Kind(
        name="sanity_check",
        hook="register_sanity_checks",
        label="check",
        interface="prunekit.interfaces:SanityCheck",
        contract="prunekit.testing.check:check_sanity_check",
    ),
    Kind(
        name="trainer",
        hook="register_trainers",
        label="trainer",
        interface="prunekit.interfaces:Trainer",
        contract="prunekit.testing.trainer:check_trainer",
    ),
    Kind(
        name="method",
        hook="register_methods",
        label="method",
        interface="prunekit.interfaces:Method",
        contract="prunekit.testing.method:check_method",
    ),
    Kind(
        name="dataset",
        hook="register_datasets",
        label="dataset",
        interface="prunekit.interfaces:Dataset",
        contract="prunekit.testing.dataset:check_dataset",
    ),
    Kind(name="suite", hook="register_suites", label="suite", interface="prunekit.bench.suite:Suite"),
    Kind(
        name="executor",
        hook="register_executors",
        label="executor",
        interface="prunekit.bench.executors:Executor",
    ),
    Kind(
        name="instrument",
        hook="register_instruments",
        label="instrument",
        interface="prunekit.instruments:Instrument",
    ),
    Kind(name="model", hook="register_models", label="model", interface=None),
)

BY_NAME: Mapping[str, Kind] = {kind.name: kind for kind in KINDS}


def _words() -> dict[str, str]:
    out: dict[str, str] = {}
    for kind in KINDS:
        for word in kind.words:
            if out.setdefault(word, kind.name) != kind.name:
                raise ValueError(f"{word!r} names both kinds {out[word]} and {kind.name}")
    return out


# every word of the command line -> the kind's name ("schedules" -> "ratio_schedule")
ALIASES: Mapping[str, str] = _words()


def kind(word: str) -> Kind:
    """The kind a name or CLI word means; an unknown one is one line listing the kinds."""
    try:
        return BY_NAME[ALIASES[word]]
    except KeyError:
        raise PrunekitError(f"unknown kind {word!r}; kinds: {', '.join(sorted(BY_NAME))}") from None
