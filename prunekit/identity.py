"""The identity of a result: one function from what determines a cell's numbers to its key.

A cell's key is the SHA-256 of a canonical JSON payload (see :func:`cell_identity`). The rule
for fields of the value objects in it (methods, scorer/schedule/check options, the training
protocol, model options) is:

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
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from prunekit.cell import CellSpec

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


# -------------------------------------------------------------------------------- origins
def _distribution_version(module: str) -> tuple[str, str]:
    """(distribution, version) that ships ``module`` (its top-level package's distribution)."""
    from importlib import metadata

    top = module.split(".", maxsplit=1)[0]
    if top in ("prunekit", "prunekit_plugins"):
        from prunekit import __version__

        return "prunekit", __version__
    names = metadata.packages_distributions().get(top, [])
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - a broken install
            continue
    return top, ""


def model_origin(name: str) -> str:
    """Where the timm model ``name`` comes from: ``distribution version`` of its module."""
    import timm

    from prunekit.plugins import get_plugins

    get_plugins()  # model plugins register into timm on import
    if not timm.is_model(name):
        return "unknown"
    module = timm.models.model_entrypoint(name).__module__
    dist, version = _distribution_version(module)
    return f"{dist} {version}".strip() + f" ({module})"


def _origin(kind: str, name: str) -> str:
    from prunekit.plugins import get_plugins

    return str(get_plugins().registry(kind).entry(name).origin)


def _revision(obj: Any) -> dict[str, int]:
    """An object's ``revision`` class variable, when set: bumped when its behaviour changes
    without any option changing, so results of the old behaviour are not served as new."""
    revision = getattr(type(obj) if not isinstance(obj, type) else obj, "revision", 0)
    return {"revision": int(revision)} if revision else {}


def _dataset_options(spec: CellSpec) -> dict[str, Any]:
    """The dataset's resolved options, when it has any that are set (noop fields at their
    defaults stay out, so datasets that gained options keep their keys)."""
    from prunekit.pipeline import instantiate

    dataset = instantiate("dataset", spec.dataset, dict(spec.dataset_options))
    options = canonical(dataset) if attrs.has(type(dataset)) else {}
    return {"options": options} if options else {}


# ------------------------------------------------------------------------------- identity
@attrs.frozen(kw_only=True)
class Identity:
    """A cell's identity: the payload of everything that determines its numbers, and its key."""

    key: str
    payload: dict[str, Any]


IDENTITY_VERSION = 1  # the layout of the payload below; bump only with a migration note


def cell_identity(spec: CellSpec, *, device_type: str = "cpu") -> Identity:
    """The identity of one bench cell: the one function that keys results.

    The payload holds the fully resolved recipe and where each piece comes from:

    * ``method``: the recipe after the cell's overrides (scorer, schedule, rounds, pre-training,
      rewinding, every option) with the method's origin; ``scorer`` and ``schedule``: the
      instantiated objects' options (defaults resolved) and origins;
    * ``check``: its resolved options and origin (absent for the clean run);
    * ``trainer`` and ``protocol``: the trainer's origin and the resolved training protocol;
    * ``model``: name, options passed to timm, origin (the distribution and module that
      registered it); ``dataset``: name, origin and resolved options; ``sparsity``, ``seed``, ``device``;
    * ``prunekit``: the core's version (selection, pipeline and store semantics);
    * ``instruments`` (only when the cell has any): each instrument's resolved options and origin.

    Where the files live (``data_root``) is not part of it. Fields declared with
    :func:`noop_field` stay out while at their defaults; everything else enters resolved.
    """
    from prunekit import __version__
    from prunekit.cell import resolve_cell

    resolved = resolve_cell(spec)
    method = resolved.method
    payload: dict[str, Any] = {
        "identity": IDENTITY_VERSION,
        "prunekit": __version__,
        "model": {
            "name": spec.model,
            "options": canonical(dict(spec.model_options)),
            "origin": model_origin(spec.model),
        },
        "dataset": {"name": spec.dataset, "origin": _origin("dataset", spec.dataset), **_dataset_options(spec)},
        "method": {
            # the scorer's and schedule's options enter resolved, below (so naming a default
            # explicitly is the same recipe as leaving it out)
            "recipe": {
                k: v
                for k, v in canonical(method).items()
                if k not in ("description", "citation", "scorer_options", "schedule_options")
            },
            "origin": _origin("method", spec.method),
        },
        "trainer": {"name": spec.trainer, "origin": _origin("trainer", spec.trainer), **_revision(resolved.trainer)},
        "protocol": canonical(spec.protocol),
        "sparsity": spec.sparsity,
        "seed": spec.seed,
        "device": device_type,
    }
    if resolved.scorer is not None:
        assert method.scorer is not None  # resolved from it
        payload["scorer"] = {
            "name": method.scorer,
            "options": canonical(resolved.scorer),
            "origin": _origin("scorer", method.scorer),
            **_revision(resolved.scorer),
        }
        payload["schedule"] = {
            "name": method.schedule,
            "options": canonical(resolved.schedule),
            "origin": _origin("ratio_schedule", method.schedule),
            **_revision(resolved.schedule),
        }
    if resolved.check is not None:
        payload["check"] = {
            "name": spec.check,
            "options": canonical(resolved.check),
            "origin": _origin("sanity_check", spec.check),
            **_revision(resolved.check),
        }
    if spec.instruments:  # absent without instruments: keys of unmeasured cells are unchanged
        payload["instruments"] = _instruments(spec)
    return Identity(key=digest(payload), payload=payload)


def _instruments(spec: CellSpec) -> dict[str, Any]:
    """The cell's instruments with their resolved options, origins and revisions (an
    instrument may train extra copies and its measurements are part of the cell's result)."""
    from prunekit.instruments import resolve_instruments

    return {
        name: {"options": canonical(instrument), "origin": _origin("instrument", name), **_revision(instrument)}
        for name, instrument in resolve_instruments(spec)
    }
