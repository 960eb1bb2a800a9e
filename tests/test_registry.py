"""The generic registry: lookups, suggestions, duplicates, origins."""

from __future__ import annotations

import pytest

from prunekit.errors import DuplicateNameError, UnknownNameError
from prunekit.registry import Origin, Registry


def _registry() -> Registry[int]:
    reg: Registry[int] = Registry("scorer")
    reg.add("snip", 1, description="a", origin=Origin(plugin="p1", version="1.0"))
    reg.add("synflow", 2, description="b", origin=Origin(plugin="p2", version="2.0"))
    return reg


def test_get_returns_registered_object_and_origin() -> None:
    """get returns the object; entry keeps description and origin."""
    reg = _registry()
    assert reg.get("synflow") == 2
    assert reg.entry("snip").origin == Origin(plugin="p1", version="1.0")
    assert reg.describe("synflow") == "b"
    assert reg.names() == ["snip", "synflow"]


def test_unknown_name_suggests_close_names() -> None:
    """A miss names the kind, suggests the nearest names and lists what exists."""
    with pytest.raises(UnknownNameError) as err:
        _registry().get("snp")
    message = str(err.value)
    assert "unknown scorer 'snp'" in message
    assert "did you mean snip" in message


def test_duplicate_names_both_plugins() -> None:
    """Registering a taken name raises an error naming both plugins."""
    reg = _registry()
    with pytest.raises(DuplicateNameError) as err:
        reg.add("snip", 3, description="c", origin=Origin(plugin="other_plugin", version="0.1"))
    assert "p1 1.0" in str(err.value) and "other_plugin 0.1" in str(err.value)
    assert reg.get("snip") == 1


def test_names_must_be_snake_case() -> None:
    """Names that are not snake_case are refused."""
    with pytest.raises(ValueError):
        _registry().add("Bad-Name", 4, description="", origin=Origin(plugin="x"))
