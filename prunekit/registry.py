"""One generic registry for every kind of pluggable object.

Entries carry a name (snake_case), a one-line description and their origin (plugin name and
version). ``get`` on a miss suggests the closest names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Generic, TypeVar

import attrs

from prunekit.errors import DuplicateNameError, UnknownNameError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@attrs.frozen(kw_only=True)
class Origin:
    """Where a registered object comes from."""

    plugin: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.plugin} {self.version}".strip()


@attrs.frozen(kw_only=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    origin: Origin


class Registry(Generic[T]):
    """Named objects of one kind (scorers, ratio schedules, checks, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, *, description: str, origin: Origin) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be snake_case ([a-z][a-z0-9_]*)")
        if name in self._entries:
            first = self._entries[name].origin
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered by both {first} and {origin}; "
                f"uninstall or disable one of them"
            )
        self._entries[name] = Entry(name=name, obj=obj, description=description, origin=origin)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        known = ", ".join(sorted(self._entries)) or "none registered"
        return f"unknown {self.kind} {name!r}; {hint}known: {known}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def describe(self, name: str) -> str:
        return self.entry(name).description

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
