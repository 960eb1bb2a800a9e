"""``prunekit completion``: the shell completion script (no plugin loads)."""

from __future__ import annotations

import click

from prunekit.errors import PrunekitError


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(prunekit completion bash)".

    It completes commands and options, and the names of methods, checks, scorers, schedules,
    trainers, datasets, suites and models.
    """
    from click.shell_completion import get_completion_class

    from prunekit.cli import cli

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click knows the three
        raise PrunekitError(f"no completion for {shell}")
    click.echo(cls(cli, {}, "prunekit", "_PRUNEKIT_COMPLETE").source())
