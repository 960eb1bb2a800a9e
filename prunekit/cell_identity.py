"""The identity of a result: one function from what determines a cell's numbers to its key.

:func:`cell_identity` resolves a cell's recipe (method, scorer, schedule, check, trainer,
dataset and instrument options, each with the plugin that provides it) into a canonical
payload whose SHA-256 is the cell's key; the rule for fields is :mod:`prunekit.identity`'s
(:func:`~prunekit.identity.noop_field`). Pinned-key tests (``tests/test_identity.py``) fail
when a key changes by accident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from prunekit.identity import canonical, digest

if TYPE_CHECKING:
    from prunekit.cell import CellSpec


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
