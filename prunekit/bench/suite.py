"""Benchmark suites: declarative TOML files loaded into frozen attrs classes.

A suite fixes the dataset, models, sparsities, seeds, methods and checks (``"all"`` or a list),
the training protocol (a ``[protocol]`` table with the fields of
:class:`~prunekit.interfaces.TrainConfig`) and the trainer. Unknown keys are an error that
names the key and the file. :meth:`Suite.fingerprint` identifies the protocol: every result
row carries it, so results of different protocols are never compared silently.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from prunekit.errors import PrunekitError
from prunekit.interfaces import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALL = "all"


def _names(value: Any) -> tuple[str, ...] | str:
    if value == ALL:
        return ALL
    return tuple(value)


@attrs.frozen(kw_only=True)
class Suite:
    name: str
    description: str = ""
    dataset: str
    data_root: str | None = None
    models: tuple[str, ...] = attrs.field(converter=tuple)
    sparsities: tuple[float, ...] = attrs.field(converter=tuple)
    seeds: tuple[int, ...] = attrs.field(converter=tuple)
    methods: tuple[str, ...] | str = attrs.field(default=ALL, converter=_names)
    checks: tuple[str, ...] | str = attrs.field(default=ALL, converter=_names)
    protocol: TrainConfig = TrainConfig()
    trainer: str = "sgd"
    device: str = "cpu"  # where the suite is meant to run ("cpu" or "cuda")
    published: str | None = None  # name of a published table to compare with
    cell_seconds: float = 60.0  # rough cost of one cell on ``device``, for --dry-run estimates
    source: str = attrs.field(default="", eq=False)

    def __attrs_post_init__(self) -> None:
        for s in self.sparsities:
            if not 0.0 <= s < 1.0:
                raise ValueError(f"sparsity {s} outside [0, 1)")
        if not self.models or not self.sparsities or not self.seeds:
            raise ValueError("models, sparsities and seeds must not be empty")

    def fingerprint(self) -> str:
        """Short hash of everything that defines the protocol (training, trainer, dataset)."""
        payload = {"protocol": attrs.asdict(self.protocol), "trainer": self.trainer, "dataset": self.dataset}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


_SUITE_KEYS = {f.name for f in attrs.fields(Suite)} - {"protocol", "source"}
_PROTOCOL_KEYS = {f.name for f in attrs.fields(TrainConfig)}


def suite_from_mapping(raw: Mapping[str, Any], source: str) -> Suite:
    """Build a suite from parsed TOML; one-line errors naming the key and the file."""
    unknown = sorted(set(raw) - _SUITE_KEYS - {"protocol"})
    if unknown:
        raise PrunekitError(
            f"unknown key {unknown[0]!r} in suite {source}; allowed keys: {', '.join(sorted(_SUITE_KEYS | {'protocol'}))}"
        )
    protocol_raw = raw.get("protocol", {})
    if not isinstance(protocol_raw, Mapping):
        raise PrunekitError(f"'protocol' in suite {source} must be a table")
    bad = sorted(set(protocol_raw) - _PROTOCOL_KEYS)
    if bad:
        raise PrunekitError(
            f"unknown key 'protocol.{bad[0]}' in suite {source}; allowed: {', '.join(sorted(_PROTOCOL_KEYS))}"
        )
    fields = {k: v for k, v in raw.items() if k != "protocol"}
    try:
        protocol = TrainConfig(**protocol_raw)
        for key in ("sparsities", "seeds", "models"):
            if key in fields and not isinstance(fields[key], list):
                raise TypeError(f"{key!r} must be a list")
        for key in ("methods", "checks"):
            if key in fields and fields[key] != ALL and not isinstance(fields[key], list):
                raise TypeError(f"{key!r} must be \"all\" or a list of names")
        return Suite(**fields, protocol=protocol, source=source)
    except (TypeError, ValueError) as err:
        raise PrunekitError(f"invalid suite {source}: {err}") from None


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as err:
        raise PrunekitError(f"cannot read suite file {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise PrunekitError(f"suite file {path} is not valid TOML: {err}") from None
    raw.setdefault("name", path.stem)
    return suite_from_mapping(raw, str(path))


def resolve_suite(name_or_path: str) -> Suite:
    """A registered suite by name, or a suite file (a path ending in .toml)."""
    if name_or_path.endswith(".toml") or Path(name_or_path).is_file():
        return load_suite(name_or_path)
    from prunekit.plugins import get_plugins

    obj = get_plugins().registry("suite").get(name_or_path)
    if isinstance(obj, Suite):
        return obj
    return load_suite(obj)
