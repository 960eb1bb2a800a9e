"""The plugin manager: loads built-in and installed plugins and fills the registries.

Built-in plugins (``prunekit_plugins.BUILTIN_PLUGINS``) always load. Third-party plugins are
found through the entry-point group ``prunekit``, each loaded inside its own try/except, so a
broken plugin is reported (``prunekit plugins``) while the others keep working. Every hook
implementation is called separately with a ``register`` callable that knows its plugin, so each
registered object records where it comes from and a duplicate name names both plugins.

Environment switches:

* ``PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD=1`` — do not load entry-point plugins;
* ``PRUNEKIT_PLUGINS=a,b`` — load only these entry-point plugins;
* ``PRUNEKIT_PLUGINS_DIR=path`` — also load every ``*.py`` file of a folder as a plugin;
* ``PRUNEKIT_STRICT_PLUGINS=1`` — any plugin problem is an error.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pluggy

from prunekit import hookspecs, kinds
from prunekit.errors import DuplicateNameError, PluginError
from prunekit.registry import Origin, Registry

ENTRY_POINT_GROUP = "prunekit"

# kind name -> Kind (the table is prunekit.kinds.KINDS; prunekit.api.names reads this view)
KINDS = kinds.BY_NAME


@attrs.define(kw_only=True)
class PluginInfo:
    """One loaded (or failed) plugin, as ``prunekit plugins`` shows it."""

    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = attrs.field(factory=list)
    registered: dict[str, list[str]] = attrs.field(factory=dict)
    errors: list[str] = attrs.field(factory=list)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(kw_only=True)
class Plugins:
    """The loaded plugins and one registry per kind of object."""

    manager: pluggy.PluginManager
    registries: dict[str, Registry[Any]]
    info: list[PluginInfo]

    def registry(self, kind: str) -> Registry[Any]:
        """The registry of ``kind``: its name or any CLI word for it (``checks``, ``scorer``);
        an unknown word is one line listing the kinds."""
        if kind in self.registries:
            return self.registries[kind]
        from prunekit.kinds import kind as find_kind

        return self.registries[find_kind(kind).name]

    @property
    def problems(self) -> list[tuple[str, str]]:
        return [(p.name, e) for p in self.info for e in p.errors]

    def versions(self) -> dict[str, str]:
        """plugin name -> version, for fingerprints of results."""
        return {p.name: p.version for p in self.info if not p.errors or p.registered}


def _description(obj: Any) -> str:
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text:
        doc = getattr(obj, "__doc__", None) or ""
        text = doc.strip().splitlines()[0] if doc.strip() else ""
    return text


def _name(obj: Any) -> str | None:
    name = getattr(obj, "name", None)
    if isinstance(obj, str) and name is None:
        return obj
    return name if isinstance(name, str) else None


# Plugins added at runtime (tests, notebooks): (object, name)
_runtime: list[tuple[object, str]] = []
_cached: Plugins | None = None


def register_plugin(plugin: object, name: str) -> None:
    """Add a plugin object or module at runtime and rebuild the registries."""
    _runtime.append((plugin, name))
    reset_plugins()


def runtime_plugin_names() -> list[str]:
    """The plugins added with :func:`register_plugin` (they exist in this process only, not in
    the worker processes an executor starts)."""
    return [name for _, name in _runtime]


def unregister_plugin(name: str) -> None:
    _runtime[:] = [(p, n) for p, n in _runtime if n != name]
    reset_plugins()


def reset_plugins() -> None:
    """Forget the loaded plugins; the next :func:`get_plugins` loads them again."""
    global _cached
    _cached = None


def get_plugins() -> Plugins:
    """The plugins of this process, loaded once from the environment's settings."""
    global _cached
    if _cached is None:
        _cached = load_plugins(
            autoload=os.environ.get("PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0"),
            only=_csv(os.environ.get("PRUNEKIT_PLUGINS")),
            plugins_dir=os.environ.get("PRUNEKIT_PLUGINS_DIR") or None,
            strict=os.environ.get("PRUNEKIT_STRICT_PLUGINS", "") not in ("", "0"),
        )
    return _cached


def _csv(value: str | None) -> set[str] | None:
    if not value:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def _candidates(
    autoload: bool, only: set[str] | None, plugins_dir: str | Path | None
) -> Iterable[tuple[str, str, str, bool, Callable[[], object]]]:
    """(name, distribution, version, builtin, loader) of every plugin to load."""
    from prunekit import __version__
    from prunekit_plugins import BUILTIN_PLUGINS

    for module_name in BUILTIN_PLUGINS:
        yield module_name, "prunekit", __version__, True, functools.partial(importlib.import_module, module_name)
    if autoload:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.value in BUILTIN_PLUGINS:  # listed too, but always loaded above
                continue
            if only is not None and ep.name not in only:
                continue
            dist = getattr(ep, "dist", None)
            yield (
                ep.name,
                dist.name if dist else "?",
                dist.version if dist else "?",
                False,
                ep.load,
            )
    if plugins_dir is not None:
        folder = Path(plugins_dir)
        if not folder.is_dir():
            yield str(folder), "-", "-", False, _missing_dir(folder)
        else:
            for file in sorted(folder.glob("*.py")):
                yield file.stem, f"file:{file}", "local", False, functools.partial(_load_file, file)
    for plugin, name in _runtime:
        yield name, "runtime", "local", False, functools.partial(_same, plugin)


def _same(plugin: object) -> object:
    return plugin


def _missing_dir(folder: Path) -> Callable[[], object]:
    def fail() -> object:
        raise PluginError(f"plugins folder {folder} does not exist; pass an existing folder")

    return fail


def _load_file(path: Path) -> ModuleType:
    module_name = f"prunekit_local_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _error_text(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"it called sys.exit({err.code!r})"
    return f"{type(err).__name__}: {err}"


def _timm_models() -> dict[str, Any]:
    """timm's model entry points by name (empty before timm is imported)."""
    if "timm" not in sys.modules:
        return {}
    import timm

    return {name: timm.models.model_entrypoint(name) for name in timm.list_models()}


def _replaced_models(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Problems for models a plugin re-registered in timm under a name that already existed
    (an impostor of a built-in or of a timm model: results would silently change)."""
    return [
        f"replaces the model {name!r} that {before[name].__module__} registered in timm; "
        "give the plugin's model another name"
        for name in sorted(before)
        if name in after and after[name] is not before[name]
    ]


def load_plugins(
    *,
    autoload: bool = True,
    only: set[str] | None = None,
    plugins_dir: str | Path | None = None,
    strict: bool = False,
) -> Plugins:
    """Load plugins and fill one registry per kind; problems are recorded, or raised if strict."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    for name, dist, version, builtin, loader in _candidates(autoload, only, plugins_dir):
        info = PluginInfo(name=name, distribution=dist, version=version, builtin=builtin)
        infos[name] = info
        models_before = _timm_models()
        try:
            plugin = loader()
        except (Exception, SystemExit) as err:  # noqa: BLE001 - reported: a broken plugin must not stop the others
            info.errors.append(f"failed to import: {_error_text(err)}; fix or uninstall {dist}")
            continue
        info.errors.extend(_replaced_models(models_before, _timm_models()))
        if dist == "runtime" or dist.startswith("file:"):  # no distribution: the plugin's own word
            info.version = str(getattr(plugin, "__version__", version))
        wanted = getattr(plugin, "PRUNEKIT_HOOKSPEC_VERSION", hookspecs.HOOKSPEC_VERSION)
        if wanted != hookspecs.HOOKSPEC_VERSION:
            info.errors.append(
                f"built for hookspec version {wanted}, this prunekit has version "
                f"{hookspecs.HOOKSPEC_VERSION}; install a release of {dist} made for it"
            )
            continue
        try:
            pm.register(plugin, name=name)
            unknown = [h for h in pm.get_hookcallers(plugin) or [] if not h.spec]
            if unknown:
                pm.unregister(plugin)
                raise PluginError(f"implements unknown hooks {[h.name for h in unknown]}")
        except Exception as err:  # noqa: BLE001 - reported: a broken plugin must not stop the others
            info.errors.append(f"cannot be registered: {_error_text(err)}")
            continue
        info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])

    registries: dict[str, Registry[Any]] = {k.name: Registry(k.title) for k in kinds.KINDS}
    for k in kinds.KINDS:
        kind, hook_name = k.name, k.hook
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order: built-ins first
            info = infos[impl.plugin_name]
            origin = Origin(plugin=info.name, version=info.version)

            def register(
                obj: Any,
                name: str | None = None,
                description: str | None = None,
                *,
                _kind: str = kind,
                _origin: Origin = origin,
                _info: PluginInfo = info,
            ) -> None:
                entry_name = name or _name(obj)
                if entry_name is None:
                    raise PluginError(f"a {_kind} registered without a name: {obj!r}")
                try:
                    registries[_kind].add(
                        entry_name, obj, description=description or _description(obj), origin=_origin
                    )
                except DuplicateNameError as err:
                    _info.errors.append(str(err))
                    return
                _info.registered.setdefault(_kind, []).append(entry_name)

            try:
                impl.function(register=register)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - reported, like a failed import
                info.errors.append(f"hook {hook_name} raised {_error_text(err)}")

    plugins = Plugins(manager=pm, registries=registries, info=list(infos.values()))
    if strict and plugins.problems:
        name, message = plugins.problems[0]
        raise PluginError(f"plugin {name}: {message} (strict mode: PRUNEKIT_STRICT_PLUGINS)")
    return plugins


def registry(kind: str) -> Registry[Any]:
    """The registry of one kind in the current plugins."""
    return get_plugins().registry(kind)
