"""Shell completion of the names prunekit knows: the registered names of every kind of
:mod:`prunekit.kinds` (methods, checks, scorers, schedules, trainers, datasets, suites,
executors, instruments, from the plugins) and models (timm's registry, prunekit's models
included).

Completing a command or an option name loads nothing; completing one of these values loads the
plugins (and, for models, timm) once, as any command that uses them does. A plugin problem
never breaks completion: it offers nothing instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prunekit.kinds import kind as find_kind


def complete_names(kind: str) -> Callable[[Any, Any, str], list[Any]]:
    """A click ``shell_complete`` callback offering the registered names of ``kind`` (a kind's
    name or any word ``prunekit list`` accepts for it; an unknown one fails at once)."""
    kind = find_kind(kind).name

    def complete(ctx: Any, param: Any, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        try:
            from prunekit.plugins import get_plugins

            entries = get_plugins().registry(kind).entries()
        except Exception:  # noqa: BLE001 - completion must never print a traceback into a shell
            return []
        return [CompletionItem(e.name, help=e.description) for e in entries if e.name.startswith(incomplete)]

    return complete


def complete_models(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    """A click ``shell_complete`` callback offering timm's model names (prunekit's included)."""
    from click.shell_completion import CompletionItem

    try:
        from prunekit.plugins import get_plugins

        get_plugins()  # model plugins register into timm when they load
        import timm

        names = timm.list_models(f"{incomplete}*")
    except Exception:  # noqa: BLE001 - as above
        return []
    return [CompletionItem(name) for name in names]
