"""The module boundaries the plugin contract promises, read from the source."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("prunekit", "prunekit_plugins")
# what a third-party plugin may import: the facade, the scorer helpers, the conformance kit
PUBLIC_MODULES = {"prunekit", "prunekit.scoring", "prunekit.testing"}


def _ours(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in PACKAGES


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _private_uses(path: Path) -> Iterator[str]:
    """``from <ours> import _name`` and ``<module of ours>._name`` in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()  # local names bound to one of our modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _ours(node.module):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {alias.name}"
                elif _is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            yield f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}"


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_module_uses_a_private_name_of_another() -> None:
    """No module of prunekit, of the built-in plugins or of the example plugin imports an
    underscore name of another module or reads one through a module."""
    found = [use for path in _sources("prunekit", "plugins", "docs/examples") for use in _private_uses(path)]
    assert found == []


def test_example_plugin_imports_only_public_modules() -> None:
    """The example plugin (code and tests) imports prunekit only through the facade, the
    scorer helpers and the conformance kit."""
    found = []
    for path in _sources("docs/examples"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prunekit":
                if node.module not in PUBLIC_MODULES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}")
            elif isinstance(node, ast.Import):
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] == "prunekit" and a.name not in PUBLIC_MODULES
                ]
    assert found == []


def test_scorers_import_only_public_modules() -> None:
    """The built-in scorers are written as a third-party scorer would be: prunekit only
    through the facade and :mod:`prunekit.scoring`."""
    found = []
    for name in ("basic_scorers", "snip", "grasp", "synflow"):
        path = ROOT / "plugins" / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] == "prunekit"
                and node.module not in PUBLIC_MODULES
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}")
    assert found == []
