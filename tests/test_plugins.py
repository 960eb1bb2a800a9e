"""Plugin discovery: built-ins, installed entry points, runtime plugins, broken plugins."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

from prunekit import hookimpl, plugins
from prunekit.errors import PluginError


def _install_fake_distribution(root: Path, dist: str, module: str, body: str, ep_name: str) -> None:
    """Write a module and a *.dist-info with an entry point into ``root`` (an importable path)."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[prunekit]\n{ep_name} = {module}\n")


GOOD = """
    import attrs, torch
    from typing import ClassVar
    from prunekit.hookspecs import hookimpl
    from prunekit.interfaces import Scorer

    @attrs.frozen
    class Ones(Scorer):
        name: ClassVar[str] = "ones_scorer"
        description: ClassVar[str] = "every weight scores 1"
        needs_data: ClassVar[bool] = False
        def score(self, model, ctx):
            return {l.name: torch.ones(l.shape) for l in ctx.layers}

    @hookimpl
    def register_scorers(register):
        register(Ones)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("pk_test_")]:
        del sys.modules[name]


def test_builtins_load_without_problems() -> None:
    """Every built-in plugin imports and registers its objects with prunekit as origin."""
    loaded = plugins.load_plugins(autoload=False)
    assert loaded.problems == []
    assert "magnitude" in loaded.registry("scorer")
    assert loaded.registry("scorer").entry("magnitude").origin.plugin == "prunekit_plugins.basic_scorers"
    assert "sgd" in loaded.registry("trainer")


def test_entry_point_plugin_is_discovered(site: Path) -> None:
    """A distribution exposing the 'prunekit' entry-point group is loaded with its version."""
    _install_fake_distribution(site, "prunekit-ones", "pk_test_ones", GOOD, "ones")
    loaded = plugins.load_plugins()
    entry = loaded.registry("scorer").entry("ones_scorer")
    assert entry.origin.plugin == "ones" and entry.origin.version == "1.2.3"
    info = next(p for p in loaded.info if p.name == "ones")
    assert info.distribution == "prunekit-ones" and info.registered == {"scorer": ["ones_scorer"]}
    assert plugins.load_plugins(autoload=False).registry("scorer").names().count("ones_scorer") == 0
    assert "ones_scorer" not in plugins.load_plugins(only={"something_else"}).registry("scorer")


def test_broken_plugin_is_reported_and_others_keep_working(site: Path) -> None:
    """A plugin that fails at import is reported with its error; the rest still load."""
    _install_fake_distribution(site, "prunekit-broken", "pk_test_broken", "raise ImportError('no numpy 9')", "broken")
    _install_fake_distribution(site, "prunekit-ones", "pk_test_ones", GOOD, "ones")
    loaded = plugins.load_plugins()
    broken = next(p for p in loaded.info if p.name == "broken")
    assert any("no numpy 9" in e for e in broken.errors)
    assert "ones_scorer" in loaded.registry("scorer")
    with pytest.raises(PluginError, match="broken"):
        plugins.load_plugins(strict=True)


def test_hook_that_raises_is_reported() -> None:
    """A hook implementation that raises is recorded against its plugin, others register."""

    class Raising:
        @hookimpl
        def register_scorers(self, register):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom in hook")

    plugins.register_plugin(Raising(), "raising")
    loaded = plugins.get_plugins()
    info = next(p for p in loaded.info if p.name == "raising")
    assert any("boom in hook" in e for e in info.errors)
    assert "magnitude" in loaded.registry("scorer")


def test_duplicate_name_reported_naming_both_plugins() -> None:
    """A second plugin registering 'magnitude' is refused with both plugin names; the first stays."""

    class Dup:
        @hookimpl
        def register_scorers(self, register):  # type: ignore[no-untyped-def]
            register(object(), name="magnitude", description="impostor")

    plugins.register_plugin(Dup(), "dup_plugin")
    loaded = plugins.get_plugins()
    info = next(p for p in loaded.info if p.name == "dup_plugin")
    assert any("prunekit_plugins.basic_scorers" in e and "dup_plugin" in e for e in info.errors)
    assert loaded.registry("scorer").describe("magnitude") != "impostor"


def test_runtime_plugin_registers_and_unregisters() -> None:
    """register_plugin adds objects at runtime; unregister_plugin removes them again."""
    module = types.SimpleNamespace()

    @hookimpl
    def register_ratio_schedules(register):  # type: ignore[no-untyped-def]
        register(object(), name="my_schedule", description="test")

    module.register_ratio_schedules = register_ratio_schedules
    plugins.register_plugin(module, "runtime_test")
    assert "my_schedule" in plugins.registry("ratio_schedule")
    plugins.unregister_plugin("runtime_test")
    assert "my_schedule" not in plugins.registry("ratio_schedule")


def test_incompatible_hookspec_version_is_not_loaded() -> None:
    """A plugin declaring another hookspec major version is reported and registers nothing."""
    module = types.SimpleNamespace(PRUNEKIT_HOOKSPEC_VERSION=99)

    @hookimpl
    def register_scorers(register):  # type: ignore[no-untyped-def]
        register(object(), name="future_scorer", description="")

    module.register_scorers = register_scorers
    plugins.register_plugin(module, "future")
    loaded = plugins.get_plugins()
    assert "future_scorer" not in loaded.registry("scorer")
    info = next(p for p in loaded.info if p.name == "future")
    assert any("hookspec version 99" in e for e in info.errors)


def test_plugins_dir_loads_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PRUNEKIT_PLUGINS_DIR loads every *.py file of a folder as a plugin."""
    (tmp_path / "local_ones.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.setenv("PRUNEKIT_PLUGINS_DIR", str(tmp_path))
    plugins.reset_plugins()
    assert "ones_scorer" in plugins.registry("scorer")
    sys.modules.pop("prunekit_local_plugins.local_ones", None)


def test_builtins_are_listed_as_entry_points_and_loaded_once() -> None:
    """pyproject's 'prunekit' entry points list every built-in plugin, and each loads once."""
    import importlib.metadata

    from prunekit_plugins import BUILTIN_PLUGINS

    values = {ep.value for ep in importlib.metadata.entry_points(group="prunekit")}
    assert set(BUILTIN_PLUGINS) <= values
    names = [p.name for p in plugins.load_plugins().info]
    assert len(names) == len(set(names))
    assert plugins.load_plugins().registry("scorer").entry("magnitude").origin.plugin == "prunekit_plugins.basic_scorers"
