"""Canonical values: what a result's identity is made of (:mod:`prunekit.cell_identity`).

A cell's key is the SHA-256 (:func:`digest`) of a canonical JSON payload (:func:`canonical`).
The rule for fields of the value objects in it (methods, scorer/schedule/check options, the
training protocol, model options) is:

* every field enters with its *resolved* value, so changing a default in code changes the keys
  of the cells that used it;
* except a field declared with :func:`noop_field`: it stays out of the payload while it holds
  its default. A new option must default to a value that has no effect and be declared this
  way, so adding it keeps every stored key valid.

Pinned-key tests (``tests/test_identity.py``) fail when a key changes by accident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

NOOP_DEFAULT = "prunekit.noop_default"
# the metadata of a noop field: ``attrs.field(default=..., converter=..., metadata=NOOP)`` is
# :func:`noop_field` written out, which type checkers read (they see the converter's input type)
NOOP: Mapping[str, bool] = {NOOP_DEFAULT: True}


def noop_field(default: Any, **kwargs: Any) -> Any:
    """An attrs field whose default has no effect: left out of result identities at that value.

    Use it for every option added after results exist, e.g.
    ``precision: str = noop_field("fp32", validator=...)``.
    """
    metadata = {**kwargs.pop("metadata", {}), **NOOP}
    return attrs.field(default=default, metadata=metadata, **kwargs)


# ------------------------------------------------------------------------ canonical values
def canonical(value: Any) -> Any:
    """``value`` as plain JSON data, the same for equal values.

    attrs instances become a mapping of their fields (a :func:`noop_field` at its default is
    left out; so are fields declared ``eq=False``, which never tell two values apart); tuples
    and lists become lists; mappings are sorted by key; floats stay floats (JSON keeps their
    shortest repr, so ``0.9`` and ``0.9000000000000001`` differ, as their results may).
    """
    if attrs.has(type(value)):
        out: dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            if not field.eq:
                continue
            item = getattr(value, field.name)
            if field.metadata.get(NOOP_DEFAULT) and _is_default(field, item):
                continue
            out[field.name] = canonical(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(canonical(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot put a {type(value).__name__} into a result identity: {value!r}")


def _is_default(field: attrs.Attribute, value: Any) -> bool:
    default: Any = field.default
    from_factory = isinstance(default, attrs.Factory)  # type: ignore[arg-type]  # a class, stubbed as a function
    if from_factory:
        default = default.factory()
    if field.converter is not None and not from_factory:
        default = field.converter(default)  # type: ignore[operator]  # stubs: a Converter is not callable
    try:
        return bool(default == value)
    except Exception:  # noqa: BLE001 - values without a plain equality count as set
        return False


def digest(payload: Any, length: int = 32) -> str:
    """SHA-256 (hex, first ``length`` digits) of the canonical JSON of ``payload``."""
    text = json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ---------------------------------------------------------------------------- option pairs
def option_pairs(value: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    """Options as sorted ``(key, value)`` pairs (hashable, one order); nested mappings too."""
    items = dict(value or {}).items()
    return tuple(sorted((str(k), option_pairs(v) if isinstance(v, Mapping) else v) for k, v in items))


def plain_options(options: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The inverse of :func:`option_pairs`: pairs (nested ones too) back to dicts."""
    return {k: plain_options(v) if _is_pairs(v) else v for k, v in options}


def _is_pairs(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value) and bool(value)
