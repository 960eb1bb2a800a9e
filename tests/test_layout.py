"""The module boundaries the plugin contract promises, read from the source."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("prunekit", "prunekit_plugins")
# what a third-party plugin may import: the facade, the helpers of each kind, the conformance kit
PUBLIC_MODULES = {
    "prunekit",
    "prunekit.data",
    "prunekit.executing",
    "prunekit.instruments",
    "prunekit.scoring",
    "prunekit.testing",
}


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


def _prunekit_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a prunekit module in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prunekit":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "prunekit"]
    return found


def test_plugins_import_only_public_modules() -> None:
    """The built-in plugins and the example plugin (code and tests) are written as any
    third-party plugin would be: prunekit only through the facade and its public modules (the
    helpers for scorers, data, instruments and executors, and the conformance kit)."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _sources("plugins", "docs/examples")
        for line, module in _prunekit_imports(path)
        if module not in PUBLIC_MODULES
    ]
    assert found == []


def test_public_modules_say_what_they_export() -> None:
    """Each public module lists its names in ``__all__``, and each listed name exists."""
    for module in sorted(PUBLIC_MODULES):
        imported = importlib.import_module(module)
        listed = getattr(imported, "__all__", None)
        assert listed, f"{module} has no __all__"
        missing = [name for name in listed if not hasattr(imported, name)]
        assert missing == [], f"{module} lists names it lacks: {missing}"


# ------------------------------------------------------------------ no plugin names in the core
# The core names a built-in plugin only through the one built-in list (prunekit/defaults.py)
# and the sentinels it defines itself (prunekit/sentinels.py: the clean check, the dense method).
NAME_HOMES = {"prunekit/defaults.py", "prunekit/sentinels.py"}
NOT_SCANNED: tuple[str, ...] = ()  # the conformance kit (prunekit/testing/) is scanned too
NAME_KINDS = ("method", "sanity_check", "scorer", "ratio_schedule", "trainer")
# string constants equal to a built-in name that are not plugin names: (file, literal) -> why.
# An entry that no longer occurs fails the test, so the list stays as short as the code allows.
NOT_PLUGIN_NAMES: dict[tuple[str, str], str] = {
    # "none" as an English word in messages and tables, where a list or a count is empty
    ("prunekit/bench/grid.py", "none"): "the message's empty method list reads 'none'",
    ("prunekit/bench/instrument_report.py", "none"): "a table cell: no stable round was found",
    ("prunekit/bench/report/data.py", "none"): "the protocol table's empty augmentation list",
    ("prunekit/bench/status.py", "none"): "empty lists of benches and of cell counts in messages",
    ("prunekit/bench/store.py", "none"): "a foreign SQLite file's empty table list in a message",
    ("prunekit/testing/plugin.py", "none"): "empty lists of plugins and of hooks in the kit's messages",
    ("prunekit/pipeline.py", "none"): (
        "an option list in a message, and the word a user types for a null option value "
        "(parse_value reads 'none' / 'null' as None)"
    ),
    # matplotlib's own option values
    ("prunekit/bench/report/plots.py", "none"): 'rcParams "svg.fonttype", linestyle and edgecolor "none"',
    # the winning_ticket instrument's run labels (ticket / reinit / random_mask), not the check
    ("prunekit/bench/instrument_report.py", "reinit"): "the winning_ticket instrument's run label",
}


def _builtin_names() -> dict[str, set[str]]:
    """Every name the built-in plugins register, by name: methods, checks, scorers, schedules,
    trainers, and the optimizers of the built-in trainers' tables."""
    from prunekit.plugins import get_plugins

    plugins = get_plugins()
    names: dict[str, set[str]] = {}
    for kind in NAME_KINDS:
        for entry in plugins.registry(kind).entries():
            if entry.origin.plugin.startswith("prunekit_plugins."):
                names.setdefault(entry.name, set()).add(kind)
                for optimizer in getattr(entry.obj, "optimizers", {}) if kind == "trainer" else ():
                    names.setdefault(optimizer, set()).add("optimizer")
    return names


def _type_literals(tree: ast.AST) -> set[int]:
    """ids of the string constants spelled inside ``Literal[...]``: a type must spell its values
    (mypy reads no constants there); the value tuples beside them use the named constants."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and (
            (isinstance(node.value, ast.Name) and node.value.id == "Literal")
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "Literal")
        ):
            inside |= {id(n) for n in ast.walk(node.slice)}
    return inside


def _core_name_literals(names: dict[str, set[str]]) -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in _sources("prunekit"):
        rel = path.relative_to(ROOT).as_posix()
        if rel in NAME_HOMES or rel.startswith(NOT_SCANNED):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typed = _type_literals(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in names
                and id(node) not in typed
            ):
                found.setdefault((rel, node.value), []).append(node.lineno)
    return found


def test_the_core_names_no_builtin_plugin() -> None:
    """No string constant of prunekit/ equals a built-in plugin's name (taken from the
    registries), outside the built-in list, the sentinels and the commented exceptions; every
    exception still occurs."""
    names = _builtin_names()
    assert {"none", "dense", "random_ticket", "sgd", "global", "random", "snip"} <= set(names)  # the scan sees them
    found = _core_name_literals(names)
    named = [
        f"{path}:{','.join(map(str, lines))}: {value!r} ({'/'.join(sorted(names[value]))})"
        for (path, value), lines in sorted(found.items())
        if (path, value) not in NOT_PLUGIN_NAMES
    ]
    assert named == [], "use prunekit.defaults or prunekit.sentinels instead of these literals"
    assert sorted(set(NOT_PLUGIN_NAMES) - set(found)) == [], "exceptions that no longer occur"


def test_the_builtin_list_and_the_sentinels_name_registered_builtins() -> None:
    """Every name of prunekit/defaults.py is registered by a built-in plugin; the clean check and
    the dense method are registered under the sentinels (read from the facade)."""
    import prunekit
    from prunekit.plugins import get_plugins

    names = _builtin_names()
    tree = ast.parse((ROOT / "prunekit" / "defaults.py").read_text(encoding="utf-8"))
    listed = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)][1:]
    assert listed and [n for n in listed if n not in names] == []  # [1:]: the module docstring
    plugins = get_plugins()
    assert plugins.registry("sanity_check").entry(prunekit.CLEAN_CHECK).origin.plugin == "prunekit_plugins.checks"
    assert plugins.registry("method").entry(prunekit.DENSE_METHOD).origin.plugin == "prunekit_plugins.methods"


def test_every_package_folder_is_installed() -> None:
    """A regular (non-editable) install ships exactly the packages pyproject lists: every folder
    of prunekit/ and plugins/ with an __init__.py must be there, or `pip install .` leaves it out
    and the installed command fails on import."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    homes = {"prunekit": "prunekit", "prunekit_plugins": "plugins"}
    found = {
        ".".join([name, *init.parent.relative_to(ROOT / folder).parts])
        for name, folder in homes.items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert found - listed == set()


def _module_imports(path: Path, module: str, deferred: bool = False) -> set[str]:
    """The prunekit modules ``module`` imports when it is imported (its top level, outside
    ``if TYPE_CHECKING:``), with ``deferred`` also those imported inside its functions;
    ``from . import x`` names the submodule x, not the package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    nodes: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if deferred:
            nodes.extend(ast.walk(node))
        else:
            nodes.extend(node.body if isinstance(node, ast.Try) else [node])
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" for a in node.names} | ({base} if node.module else set())
    return found


@pytest.mark.parametrize("deferred", [False, True], ids=["at import time", "inside functions too"])
def test_no_import_cycles(deferred: bool) -> None:
    """Importing any prunekit module never comes back to a module still being imported; nor
    does any import inside a function come back to the module that makes it (the modules form
    layers: none imports, even late, a module that depends on it)."""
    modules = {}
    for path in (ROOT / "prunekit").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {
        m: sorted(t for t in _module_imports(p, m, deferred) if t in modules and t != m) for m, p in modules.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        stack.append(module)
        for target in graph[module]:
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_the_command_table_names_each_command_as_it_is() -> None:
    """``prunekit.cli`` only assembles the commands of the commands package: each entry of its
    table loads the command of that name, whose help starts with the line ``--help`` shows
    without loading it; no command is defined in ``prunekit.cli`` itself."""
    import click

    from prunekit import cli

    for name, (module, attribute, first_line) in cli.LAZY_COMMANDS.items():
        assert module.startswith("prunekit.commands."), name
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == name
        assert (command.help or "").strip().splitlines()[0] == first_line, name
    assert not [n for n, v in vars(cli).items() if isinstance(v, click.Command) and v is not cli.cli]
