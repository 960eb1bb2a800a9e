"""The ``prunekit`` command. User errors print one line and exit non-zero, never a traceback.

Output fits where it goes (:mod:`prunekit.console`): rich tables and live progress on a
terminal; plain, untruncated lines when stdout is a pipe or a file; no colour with
``NO_COLOR`` or ``--no-color``; ``--json`` for machines. ``--help``, ``--version`` and shell
completion of commands load neither plugins nor torch: the built-in commands that need heavy
modules import them when they run, and plugin commands are added only when a command that is
not built in is asked for (:class:`PrunekitGroup`).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

import click

from prunekit import __version__
from prunekit.errors import PluginError, PrunekitError
from prunekit.plugins import PluginInfo, get_plugins, reset_plugins


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _set_plugins_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--plugins-dir: load every *.py file of DIR as a plugin (sets PRUNEKIT_PLUGINS_DIR)."""
    if value is None or ctx.resilient_parsing:
        return
    os.environ["PRUNEKIT_PLUGINS_DIR"] = value
    reset_plugins()  # the commands of the plugins in DIR are added when they are asked for


def _set_strict(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--strict-plugins: any plugin problem is an error (sets PRUNEKIT_STRICT_PLUGINS)."""
    if not value or ctx.resilient_parsing:
        return
    os.environ["PRUNEKIT_STRICT_PLUGINS"] = "1"
    reset_plugins()


def _set_no_color(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--no-color: no colour anywhere in this process (sets NO_COLOR, which rich honours)."""
    if value:
        os.environ["NO_COLOR"] = "1"
        ctx.color = False


# built-in commands of the commands package, imported when they are used:
# name -> (module, the click command's attribute, the first line of its help)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "bench": ("prunekit.commands.bench", "bench", "Run a benchmark suite: prune, check, train, store, rank and report."),
    "completion": ("prunekit.commands.completion", "completion", 'Print the shell completion script: eval "$(prunekit completion bash)".'),
    "list": ("prunekit.commands.plugins", "list_", "Registered objects of one KIND (scorers, schedules, checks, methods, models, ...) or all."),
    "plugins": ("prunekit.commands.plugins", "plugins", "Every plugin: name, distribution, version, hooks, what it registered, problems, fixes."),
    "prune": ("prunekit.commands.prune", "prune", "Prune a model and write its masks; print the per-layer densities."),
    "report": ("prunekit.commands.report", "report", "Regenerate reports and plots from the results store without re-running any cell."),
    "train": ("prunekit.commands.train", "train", "Train a masked (or dense) model and print its test accuracy."),
    "status": ("prunekit.commands.status", "status", "What a running or interrupted bench has done, is doing and has left, with its ETA."),
}


# built-in commands that use no plugin: they run without loading any (fast, and unaffected by
# a broken plugin)
PLUGIN_FREE_COMMANDS = ("status", "completion")


class PrunekitGroup(click.Group):
    """The ``prunekit`` group: built-in commands of other modules load when they are used, and
    plugin commands (hook ``register_commands``) are added only when a name that is not built
    in is asked for, or when a command runs. ``--help``, ``--version`` and completion of command
    names therefore load no plugin, no torch and no timm."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name in LAZY_COMMANDS:
            module_name, attribute, _help = LAZY_COMMANDS[cmd_name]
            command: click.Command = getattr(importlib.import_module(module_name), attribute)
            self.add_command(command, cmd_name)
            _COMMAND_OWNERS[cmd_name] = "prunekit"
            return command
        if ctx.resilient_parsing:  # completing: plugins are not loaded for that
            return None
        _add_plugin_commands()
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["prunekit.help"] = any(a in ("--help", "-h") for a in rest)  # help loads no plugins
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, without importing the lazy commands."""
        limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                # shortened as click shortens a loaded command's help
                rows.append((name, click.Command(name, help=LAZY_COMMANDS[name][2]).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=PrunekitGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Plugins may add commands: `prunekit plugins` lists what each plugin adds.",
)
@click.version_option(__version__, prog_name="prunekit")
@click.option(
    "--plugins-dir",
    type=click.Path(exists=True, file_okay=False),
    callback=_set_plugins_dir,
    expose_value=False,
    is_eager=True,
    help="Also load every *.py file of DIR as a plugin (same as PRUNEKIT_PLUGINS_DIR).",
)
@click.option(
    "--strict-plugins",
    is_flag=True,
    callback=_set_strict,
    expose_value=False,
    is_eager=True,
    help="Make any plugin problem an error (same as PRUNEKIT_STRICT_PLUGINS=1).",
)
@click.option(
    "--no-color",
    is_flag=True,
    callback=_set_no_color,
    expose_value=False,
    is_eager=True,
    help="No colour in any output (same as NO_COLOR=1).",
)
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    help="Show the full traceback of an unexpected error (same as PRUNEKIT_DEBUG=1).",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """prunekit: pruning at initialization, sanity-checked and benchmarked.

    Plugins load from the entry-point group `prunekit`; PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD=1 loads
    only the built-in ones and PRUNEKIT_PLUGINS=a,b only those. `prunekit plugins` shows them.
    Output is plain text when stdout is not a terminal; NO_COLOR or --no-color turn colour off.
    """
    from prunekit.console import colour_off

    if colour_off():
        ctx.color = False
    if ctx.invoked_subcommand in PLUGIN_FREE_COMMANDS or ctx.meta.get("prunekit.help"):
        return
    loaded = get_plugins()  # strict mode raises here: one line, exit 1
    _add_plugin_commands()  # their problems are reported with the plugins' own
    if os.environ.get("PRUNEKIT_STRICT_PLUGINS", "") not in ("", "0") and loaded.problems:
        name, message = loaded.problems[0]
        raise PluginError(f"plugin {name}: {message} (strict mode: PRUNEKIT_STRICT_PLUGINS)")
    if ctx.invoked_subcommand != "plugins":  # that command shows the problems itself
        from prunekit.commands.plugins import origin

        for info in loaded.info:
            for error in info.errors:
                click.echo(f"warning: plugin {info.name} ({origin(info)}): {error}", err=True)
        if loaded.problems:
            click.echo(
                "warning: the other plugins work; `prunekit plugins` says how to fix this", err=True
            )


# --------------------------------------------------------------------------- plugin commands
_COMMAND_OWNERS: dict[str, str] = {}  # command name -> the plugin that added it ("prunekit": built in)
_COMMAND_PROBLEMS: dict[str, list[str]] = {}  # plugin name -> what went wrong adding its commands
_COMMANDS_ADDED_FOR: list[object] = []  # the plugins whose commands are in the group (the last load)


def _add_plugin_commands() -> None:
    """Let plugins add commands, once per load of the plugins. A plugin may not replace a
    command it does not own (a built-in, loaded or not, or another plugin's): the original
    stays, and the attempt is a plugin problem."""
    loaded = get_plugins()
    if _COMMANDS_ADDED_FOR and _COMMANDS_ADDED_FOR[0] is loaded:
        _merge_command_problems(loaded.info)
        return
    _COMMANDS_ADDED_FOR[:] = [loaded]
    for name in [*cli.commands, *LAZY_COMMANDS]:
        _COMMAND_OWNERS.setdefault(name, "prunekit")
    for impl in loaded.manager.hook.register_commands.get_hookimpls():
        plugin = impl.plugin_name
        problems = _COMMAND_PROBLEMS.setdefault(plugin, [])
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - a broken plugin must not break the CLI
            text = f"it called sys.exit({err.code!r})" if isinstance(err, SystemExit) else f"{type(err).__name__}: {err}"
            _note(problems, f"hook register_commands raised {text}")
        for name, command in list(cli.commands.items()):
            owner = _COMMAND_OWNERS.setdefault(name, plugin)
            if command is not before.get(name) and owner != plugin:
                _note(problems, f"tried to replace the command {name!r} of {owner}; give its command another name")
                if name not in before:  # a built-in not loaded yet: it loads when asked for
                    del cli.commands[name]
        for name, command in before.items():
            if _COMMAND_OWNERS.get(name) != plugin:
                cli.commands[name] = command  # the owner's command stays
        if not problems:
            del _COMMAND_PROBLEMS[plugin]
    _merge_command_problems(loaded.info)


def _note(problems: list[str], text: str) -> None:
    if text not in problems:
        problems.append(text)


def _merge_command_problems(infos: list[PluginInfo]) -> None:
    """Add the command problems to the plugins' own (so `prunekit plugins` lists them)."""
    for info in infos:
        for text in _COMMAND_PROBLEMS.get(info.name, []):
            if text not in info.errors:
                info.errors.append(text)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one line and a non-zero exit.

    User errors (:class:`PrunekitError`, bad options, files that cannot be read or written)
    print what is wrong and what to do; an unexpected exception prints its one-line summary and
    a pointer to ``--debug`` (or ``PRUNEKIT_DEBUG=1``), which shows the full traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("PRUNEKIT_DEBUG", "") not in ("", "0")
    try:
        cli.main(args=args, prog_name="prunekit", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.format_message())
        sys.exit(err.exit_code)
    except click.ClickException as err:
        _fail(f"{err.format_message()} (see `prunekit --help`)", err.exit_code)
    except PrunekitError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as err:
        if debug:
            raise
        where = f" {err.filename}" if err.filename else ""
        _fail(f"cannot use{where}: {err.strerror or err}; check the path and its permissions")
    except Exception as err:
        if debug:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        _fail(
            f"unexpected {type(err).__name__}{': ' + first if first else ''}; "
            "run again with --debug for the traceback, and report it if it is prunekit's fault"
        )


if __name__ == "__main__":
    main()
