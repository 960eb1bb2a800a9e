"""A whole plugin (:func:`check_plugin`) and what the ``prunekit_conformance`` fixture gives (:class:`Conformance`)."""

from __future__ import annotations

from prunekit.kinds import BY_NAME
from prunekit.plugins import get_plugins, register_plugin, unregister_plugin
from prunekit.testing.check import check_sanity_check
from prunekit.testing.dataset import check_dataset
from prunekit.testing.fixtures import ConformanceError, fail, single_threaded
from prunekit.testing.method import check_method
from prunekit.testing.schedule import check_schedule
from prunekit.testing.scorer import check_scorer
from prunekit.testing.trainer import check_trainer


@single_threaded
def check_plugin(name: str) -> dict[str, list[str]]:
    """Check a loaded plugin: it loaded without problems, registered something, and every
    scorer, schedule, check, method, trainer and dataset it registered passes its check
    (default options).
    Returns what it registered, ``{kind: [names]}``."""
    loaded = get_plugins()
    info = next((p for p in loaded.info if p.name == name), None)
    subject = f"plugin {name!r}"
    if info is None:
        known = ", ".join(p.name for p in loaded.info if not p.builtin) or "none"
        fail(
            subject,
            f"it is not loaded (third-party plugins loaded: {known})",
            "an entry point `[project.entry-points.prunekit] " + name + ' = "your_module"`',
            "Install your package (pip install -e .), and check "
            "PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD and PRUNEKIT_PLUGINS.",
        )
    if info.errors:
        fail(
            subject,
            "it has problems: " + " | ".join(info.errors),
            "a plugin that loads cleanly (see `prunekit plugins`)",
        )
    if not info.registered:
        fail(
            subject,
            f"it registered nothing (hooks: {', '.join(info.hooks) or 'none'})",
            "register_* hooks marked with @prunekit.hookimpl that call register(...)",
        )
    for kind, names in info.registered.items():
        check = BY_NAME[kind].contract_check()  # the kind's contract, if the kit has one
        for entry in names:
            if check is not None:
                check(entry)
    return dict(info.registered)


class Conformance:
    """What the ``prunekit_conformance`` fixture gives: the checks, and ``register`` to add a
    plugin object or module for the duration of one test (removed afterwards)."""

    check_scorer = staticmethod(check_scorer)
    check_schedule = staticmethod(check_schedule)
    check_sanity_check = staticmethod(check_sanity_check)
    check_method = staticmethod(check_method)
    check_trainer = staticmethod(check_trainer)
    check_dataset = staticmethod(check_dataset)
    check_plugin = staticmethod(check_plugin)
    ConformanceError = ConformanceError

    def __init__(self) -> None:
        self._registered: list[str] = []

    def register(self, plugin: object, name: str) -> None:
        register_plugin(plugin, name)
        self._registered.append(name)

    def close(self) -> None:
        for name in reversed(self._registered):
            unregister_plugin(name)
        self._registered.clear()
