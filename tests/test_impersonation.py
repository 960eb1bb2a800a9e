"""A plugin cannot silently impersonate a built-in: a model it re-registers in timm, a command it
replaces, or a sys.exit at import are plugin problems; strict mode refuses them; and the result
identity follows the model that really runs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from prunekit.cell import CellSpec
from prunekit.cell_identity import cell_identity
from prunekit.plugins import reset_plugins
from tests.cli_runner import run_cli

IMPOSTOR_MODEL = '''
from timm.models import register_model
from prunekit_plugins.models.small_cnn import digits_mlp

@register_model
def digits_cnn(pretrained=False, **kwargs):
    return digits_mlp(pretrained=pretrained, **kwargs)
'''

IMPOSTOR_COMMAND = '''
import click
from prunekit.hookspecs import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command("prune")
    def prune():
        click.echo("not the real prune")
'''

EXITING = '''
import sys
sys.exit(3)
'''


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A plugins folder given through PRUNEKIT_PLUGINS_DIR; plugins and timm's registry are
    restored afterwards."""
    import timm

    from prunekit.plugins import get_plugins

    get_plugins()  # the built-in models are in timm's registry from here on
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.setenv("PRUNEKIT_PLUGINS_DIR", str(folder))
    monkeypatch.delenv("PRUNEKIT_STRICT_PLUGINS", raising=False)
    registry = timm.models._registry
    tables = {
        name: getattr(registry, name)
        for name in dir(registry)
        if name.startswith(("_model_", "_module_to_"))
    }
    saved = {name: copy.deepcopy(table) for name, table in tables.items()}
    reset_plugins()
    yield folder
    for name, table in tables.items():  # in place: timm's functions hold these very objects
        table.clear()
        table.update(saved[name])
    monkeypatch.delenv("PRUNEKIT_PLUGINS_DIR")
    reset_plugins()


def _problems(capsys: pytest.CaptureFixture[str]) -> dict[str, list[str]]:
    code, out, err = run_cli(["plugins", "--json"], capsys)
    assert code == 0, err
    return {row["name"]: row["errors"] for row in json.loads(out)}


@pytest.mark.filterwarnings("ignore:Overwriting digits_cnn:UserWarning")  # timm's own notice
def test_a_replaced_model_is_a_problem_and_changes_the_identity(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plugin re-registering digits_cnn in timm is named by `prunekit plugins`, strict mode
    refuses it in one line, and a cell on digits_cnn gets another key (its origin is the
    impostor's module), so the built-in's stored results are never served for it."""
    spec = CellSpec(model="digits_cnn", dataset="digits", method="snip", sparsity=0.9, seed=0)
    real = cell_identity(spec)
    (plugin_dir / "impostor.py").write_text(IMPOSTOR_MODEL)
    reset_plugins()
    problems = _problems(capsys)
    assert any("replaces the model 'digits_cnn'" in e for e in problems["impostor"]), problems["impostor"]
    faked = cell_identity(spec)
    assert faked.key != real.key and "impostor" in faked.payload["model"]["origin"]
    code, _, err = run_cli(["--strict-plugins", "list", "methods"], capsys)
    assert code != 0 and "digits_cnn" in err and err.count("\n") == 1


def test_a_replaced_command_is_a_problem_and_the_builtin_stays(
    plugin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plugin adding its own `prune` command is reported; `prunekit prune --help` is still the
    built-in's; strict mode refuses to run."""
    (plugin_dir / "cmd_impostor.py").write_text(IMPOSTOR_COMMAND)
    reset_plugins()
    code, out, _ = run_cli(["prune", "--help"], capsys)
    assert code == 0 and "--sparsity" in out and "not the real prune" not in out
    problems = _problems(capsys)
    assert any("replace the command 'prune'" in e for e in problems["cmd_impostor"]), problems
    code, _, err = run_cli(["--strict-plugins", "list", "methods"], capsys)
    assert code != 0 and "prune" in err


def test_sys_exit_at_import_is_a_reported_problem(plugin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin calling sys.exit() at import does not end prunekit: it is a problem with its
    reason, and the other commands work."""
    (plugin_dir / "exiting.py").write_text(EXITING)
    reset_plugins()
    code, out, _ = run_cli(["list", "methods"], capsys)
    assert code == 0 and "snip" in out
    problems = _problems(capsys)
    assert any("sys.exit(3)" in e for e in problems["exiting"]), problems
