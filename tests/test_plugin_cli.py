"""Plugin management through the real CLI: broken plugins are reported, the CLI keeps working.

Every test drives ``prunekit.cli.main`` in process, with plugins installed as fake
distributions (an entry point in group ``prunekit``) or loaded from a folder (``--plugins-dir``).
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import prunekit
from prunekit.cli import cli
from tests.cli_runner import run_cli as run

GOOD = """
    import attrs, torch
    from typing import ClassVar
    from prunekit.hookspecs import hookimpl
    from prunekit.interfaces import Scorer

    @attrs.frozen
    class Ones(Scorer):
        name: ClassVar[str] = "{name}"
        description: ClassVar[str] = "every weight scores 1"
        needs_data: ClassVar[bool] = False
        def score(self, model, ctx):
            return {{l.name: torch.ones(l.shape) for l in ctx.layers}}

    @hookimpl
    def register_scorers(register):
        register(Ones)
"""

RAISING_HOOK = """
    from prunekit.hookspecs import hookimpl

    @hookimpl
    def register_scorers(register):
        raise RuntimeError("boom in register_scorers")
"""

FUTURE = (
    """
    PRUNEKIT_HOOKSPEC_VERSION = 3
"""
    + GOOD
)

COMMAND = """
    import click
    from prunekit.hookspecs import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command("pk-test-hello")
        def hello():
            click.echo("hello from a folder plugin")
"""




@pytest.fixture(autouse=True)
def _restore_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """--plugins-dir and --strict-plugins set environment variables for the whole process:
    record them as unset so they are removed again; forget modules loaded from folders."""
    for var in ("PRUNEKIT_PLUGINS_DIR", "PRUNEKIT_STRICT_PLUGINS"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    yield
    for name in [m for m in sys.modules if m.startswith(("prunekit_local_plugins.", "pk_cli_"))]:
        del sys.modules[name]
    cli.commands.pop("pk-test-hello", None)


def _folder(root: Path, **files: str) -> Path:
    folder = root / "plugins"
    folder.mkdir()
    for stem, body in files.items():
        (folder / f"{stem}.py").write_text(textwrap.dedent(body))
    return folder


def _install(site: Path, dist: str, module: str, body: str, ep_name: str) -> None:
    """A module plus a *.dist-info exposing it in the entry-point group ``prunekit``."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[prunekit]\n{ep_name} = {module}\n")


@pytest.fixture
def broken_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution whose plugin fails at import, beside a working one."""
    monkeypatch.syspath_prepend(str(tmp_path))
    _install(
        tmp_path, "prunekit-broken", "pk_cli_broken", "raise ImportError('needs numpy 9')", "broken"
    )
    _install(tmp_path, "prunekit-ones", "pk_cli_ones", GOOD.format(name="ones_scorer"), "ones")
    return tmp_path


def test_plugins_lists_name_distribution_version_hooks_and_objects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`prunekit plugins` prints every plugin with distribution, version, hooks and what it
    registered, and says when there is no problem."""
    code, out, _ = run(["plugins"], capsys)
    assert code == 0
    assert f"prunekit_plugins.basic_scorers  prunekit {prunekit.__version__}  (built-in)" in out
    assert "  hooks: register_scorers" in out
    assert "  scorer: magnitude, random" in out
    assert out.rstrip().endswith("no problems")


def test_plugin_failing_at_import_is_reported_and_cli_keeps_working(
    broken_install: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plugin that fails at import shows in `plugins` (text and JSON) with its error and a
    fix naming its distribution; `list` still works, lists the healthy plugin's scorer and
    warns on stderr what is wrong."""
    code, out, _ = run(["plugins"], capsys)
    assert code == 0
    assert "broken  prunekit-broken 1.2.3  (third-party)" in out
    assert "problem: failed to import: ImportError: needs numpy 9" in out
    assert (
        "fix: upgrade it (pip install -U prunekit-broken) "
        "or remove it (pip uninstall prunekit-broken)" in out
    )
    assert "1 problem(s)" in out

    code, out, _ = run(["plugins", "--json"], capsys)
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["broken"]["version"] == "1.2.3" and "needs numpy 9" in rows["broken"]["errors"][0]
    assert "pip uninstall prunekit-broken" in rows["broken"]["fix"]
    assert rows["ones"]["registered"] == {"scorer": ["ones_scorer"]} and rows["ones"]["fix"] is None

    code, out, err = run(["list", "scorers", "--json"], capsys)
    assert code == 0
    assert {"ones_scorer", "magnitude"} <= {row["name"] for row in json.loads(out)}
    assert (
        "warning: plugin broken (prunekit-broken 1.2.3): "
        "failed to import: ImportError: needs numpy 9" in err
    )
    assert "`prunekit plugins` says how to fix this" in err


def test_hook_that_raises_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin whose register hook raises is listed with the hook and the exception; the
    built-in scorers are still listed."""
    folder = _folder(tmp_path, raising=RAISING_HOOK)
    code, out, _ = run(["--plugins-dir", str(folder), "plugins"], capsys)
    assert code == 0
    assert "problem: hook register_scorers raised RuntimeError: boom in register_scorers" in out
    assert f"fix: fix or remove {folder / 'raising.py'}" in out
    code, out, err = run(["--plugins-dir", str(folder), "list", "scorers", "--json"], capsys)
    assert code == 0 and "snip" in {row["name"] for row in json.loads(out)}
    assert "boom in register_scorers" in err


def test_two_plugins_registering_the_same_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two plugins registering scorer 'twin' is a problem naming both; the first one wins and
    `list` keeps working."""
    folder = _folder(tmp_path, a_first=GOOD.format(name="twin"), b_second=GOOD.format(name="twin"))
    code, out, _ = run(["--plugins-dir", str(folder), "plugins"], capsys)
    assert code == 0
    assert "problem: scorer 'twin' is registered by both a_first local and b_second local" in out
    code, out, err = run(["--plugins-dir", str(folder), "list", "scorers", "--json"], capsys)
    rows = [row for row in json.loads(out) if row["name"] == "twin"]
    assert code == 0 and [row["plugin"] for row in rows] == ["a_first local"]
    assert "registered by both" in err


def test_incompatible_hookspec_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin built for hookspec version 3 is reported with both versions and registers
    nothing."""
    folder = _folder(tmp_path, future=FUTURE.format(name="future_scorer"))
    code, out, _ = run(["--plugins-dir", str(folder), "plugins", "--json"], capsys)
    row = next(r for r in json.loads(out) if r["name"] == "future")
    assert code == 0
    assert "built for hookspec version 3, this prunekit has version 2" in row["errors"][0]
    assert row["registered"] == {}
    code, out, _ = run(["--plugins-dir", str(folder), "list", "scorers", "--json"], capsys)
    assert code == 0 and "future_scorer" not in {r["name"] for r in json.loads(out)}


@pytest.mark.parametrize("how", ["flag", "env"])
def test_strict_mode_turns_problems_into_one_line_errors(
    how: str,
    broken_install: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With --strict-plugins (or PRUNEKIT_STRICT_PLUGINS=1) a broken plugin makes every
    command fail with exit 1 and one line naming the plugin and its error, no traceback."""
    argv = ["list", "scorers"]
    if how == "flag":
        argv = ["--strict-plugins", *argv]
    else:
        monkeypatch.setenv("PRUNEKIT_STRICT_PLUGINS", "1")
    code, out, err = run(argv, capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: plugin broken: failed to import: ImportError: needs numpy 9")


def test_strict_mode_without_problems_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """--strict-plugins with healthy plugins changes nothing."""
    code, out, err = run(["--strict-plugins", "list", "methods", "--json"], capsys)
    assert code == 0 and err == ""
    assert "random_ticket" in {row["name"] for row in json.loads(out)}


def test_plugins_dir_option_loads_objects_and_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plugins-dir loads every *.py of the folder: its scorer is listed with the file as
    distribution, and a command it adds through register_commands runs."""
    folder = _folder(tmp_path, local_ones=GOOD.format(name="folder_scorer"), hello=COMMAND)
    code, out, _ = run(["--plugins-dir", str(folder), "list", "scorers", "--json"], capsys)
    assert code == 0
    assert {"name": "folder_scorer", "plugin": "local_ones local"}.items() <= next(
        r for r in json.loads(out) if r["name"] == "folder_scorer"
    ).items()
    code, out, _ = run(["--plugins-dir", str(folder), "pk-test-hello"], capsys)
    assert code == 0 and out == "hello from a folder plugin\n"


def test_plugins_dir_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plugins-dir with a missing folder is a usage error naming the folder."""
    code, _, err = run(["--plugins-dir", str(tmp_path / "nowhere"), "plugins"], capsys)
    assert code == 2
    assert "nowhere" in err and "does not exist" in err


REPLACER = """
    import click
    from prunekit.hookspecs import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command("bench")
        def fake_bench():
            click.echo("not the real bench")

        @cli.command("status")
        def fake_status():
            click.echo("not the real status")
"""


def test_plugin_cannot_take_the_name_of_a_builtin_not_yet_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Built-in commands load when used; a plugin adding a command under the name of one that
    has not loaded yet ('bench') or of one that has ('status') is a plugin problem, and the
    built-in runs."""
    folder = _folder(tmp_path, replacer=REPLACER)
    code, out, _ = run(["--plugins-dir", str(folder), "plugins", "--json"], capsys)
    row = next(r for r in json.loads(out) if r["name"] == "replacer")
    assert code == 0
    assert "tried to replace the command 'bench' of prunekit; give its command another name" in row["errors"]
    assert "tried to replace the command 'status' of prunekit; give its command another name" in row["errors"]
    code, out, _ = run(["--plugins-dir", str(folder), "bench", "--help"], capsys)
    assert code == 0 and "Run a benchmark suite" in out and "not the real" not in out
    code, out, err = run(["--plugins-dir", str(folder), "status", "--db", str(tmp_path / "none.db")], capsys)
    assert "not the real" not in out and "no results store" in err


def test_help_lists_the_builtin_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`prunekit --help` lists every built-in command with its summary and says where plugin
    commands are listed."""
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.startswith("  ") and line.split()}
    assert {"bench", "completion", "list", "plugins", "prune", "report", "status", "train"} <= listed
    assert "`prunekit plugins` lists what each plugin adds" in out
