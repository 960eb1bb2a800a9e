"""``prunekit plugins`` and ``prunekit list``: what is installed, and what is wrong with it."""

from __future__ import annotations

import click

from prunekit.commands.common import emit_json
from prunekit.kinds import BY_NAME
from prunekit.kinds import kind as find_kind
from prunekit.plugins import PluginInfo, get_plugins


def origin(info: PluginInfo) -> str:
    return f"{info.distribution} {info.version}".strip()


def fix(info: PluginInfo) -> str | None:
    """What to do about a plugin's problems (None when it has none)."""
    if not info.errors:
        return None
    if info.builtin:
        return (
            "a built-in plugin failed: reinstall prunekit (pip install -e . in a checkout) "
            "and report it"
        )
    if info.distribution == "runtime":
        return "fix the object passed to prunekit.plugins.register_plugin"
    if info.distribution.startswith("file:"):
        path = info.distribution.removeprefix("file:")
        return (
            f"fix or remove {path} (loaded from the plugins folder: "
            "--plugins-dir / PRUNEKIT_PLUGINS_DIR)"
        )
    if info.distribution == "-":
        return "pass an existing folder to --plugins-dir / PRUNEKIT_PLUGINS_DIR"
    dist = info.distribution
    return (
        f"upgrade it (pip install -U {dist}) or remove it (pip uninstall {dist}); to skip "
        "it, name the plugins to load in PRUNEKIT_PLUGINS=a,b, or load none with "
        "PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD=1"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Every plugin: name, distribution, version, hooks, what it registered, problems, fixes."""
    loaded = get_plugins()
    if as_json:
        emit_json([{**p.as_dict(), "fix": fix(p)} for p in loaded.info])
        return
    for p in loaded.info:
        kind = "built-in" if p.builtin else "third-party"
        click.echo(f"{click.style(p.name, bold=True)}  {origin(p)}  ({kind})")
        click.echo(f"  hooks: {', '.join(p.hooks) or '-'}")
        for registered_kind, names in p.registered.items():
            click.echo(f"  {registered_kind}: {', '.join(names)}")
        for error in p.errors:
            click.echo(f"  problem: {error}")
        if p.errors:
            click.echo(f"  fix: {fix(p)}")
    count = len(loaded.problems)
    summary = f"{count} problem(s): see above" if count else "no problems"
    click.echo(f"{len(loaded.info)} plugins, {summary}")


@click.command("list")
@click.argument("kind", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(kind: str | None, as_json: bool) -> None:
    """Registered objects of one KIND (scorers, schedules, checks, methods, models, ...) or all."""
    loaded = get_plugins()
    kinds = [find_kind(kind).name] if kind else list(BY_NAME)
    rows = [
        {"kind": k, "name": e.name, "description": e.description, "plugin": str(e.origin)}
        for k in kinds
        for e in loaded.registry(k).entries()
    ]
    if as_json:
        emit_json(rows)
        return
    from prunekit.console import print_table

    columns = ("kind", "name", "description", "plugin")
    print_table(columns, [[row[c] for c in columns] for row in rows], whole=("kind", "name"))
