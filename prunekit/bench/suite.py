"""Benchmark suites: declarative TOML files loaded into frozen attrs classes.

A suite fixes the dataset, models, sparsities, seeds, methods and checks (``"all"`` or a list),
the training protocol (a ``[protocol]`` table with the fields of
:class:`~prunekit.interfaces.TrainConfig`), the scoring overrides (a ``[scoring]`` table) and
the trainer, and the options of models (``[model]``), methods (``[method_options.<name>]``) and
checks (``[check_options.<name>]``) and the dataset (``[dataset_options]``), and the instruments
that measure its cells (``instruments = [...]`` with ``[instrument_options.<name>]``). Unknown keys are an error that names the key and the file; a value of the wrong
type or range is one line naming the key.

Two settings are readings of the results, not part of them (they enter neither the protocol's
fingerprint nor any cell's identity): ``reference_method``, the method every leaderboard
measures the others against (Δ), and ``[[published_numbers]]``, the accuracies the papers
report for this suite's cells, which the report puts beside ours (:class:`PublishedNumber`). :meth:`Suite.fingerprint` identifies the protocol:
every result row carries it, so results of different protocols are never compared silently.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from prunekit.defaults import DEFAULT_TRAINER, REFERENCE_METHOD
from prunekit.errors import PrunekitError
from prunekit.identity import canonical
from prunekit.interfaces import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALL = "all"
ALL_METHODS = "*"  # [method_options."*"]: overrides for every method of the suite
DEVICES = ("cpu", "cuda")
SCORING_KEYS = ("samples_per_class", "iterations")  # overrides of the scorers' data request


BEST, FINAL = "best_accuracy", "final_accuracy"  # the stored metrics a published number can match


@attrs.frozen(kw_only=True)
class PublishedNumber:
    """One accuracy a paper reports for a cell of ours: test accuracy in percent, the mean of
    the authors' runs, under our names; ``metric`` is the stored metric it is comparable with
    (the authors' code of Su et al. 2020 and GraSP logs the best epoch's, so ``best_accuracy``);
    ``confirmed`` is false for a transcription or a secondary source."""

    dataset: str
    model: str
    method: str
    sparsity: float
    accuracy: float  # percent
    source: str
    confirmed: bool
    metric: str = attrs.field(default=BEST, validator=attrs.validators.in_((BEST, FINAL)))

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _numbers(values: Iterable[PublishedNumber]) -> tuple[PublishedNumber, ...]:
    return tuple(values)


def _names(value: Any) -> tuple[str, ...] | str:
    if value == ALL:
        return ALL
    return tuple(value)


@attrs.frozen(kw_only=True)
class Suite:
    """A benchmark: what to run (the grid) and how to train (the protocol)."""

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
    scoring: Mapping[str, int] = attrs.field(factory=dict, converter=lambda d: dict(sorted(dict(d).items())))
    trainer: str = DEFAULT_TRAINER
    # options of the recipe's parts, each entering the identity of the cells that use them:
    # timm.create_model options for every model ([model]) or one ([model.<name>]), overrides of
    # a method's fields ([method_options.<method>]) and a check's options ([check_options.<check>])
    model_options: Mapping[str, Any] = attrs.field(factory=dict, converter=lambda d: dict(sorted(dict(d).items())))
    method_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=lambda d: dict(sorted(dict(d).items())))
    check_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=lambda d: dict(sorted(dict(d).items())))
    dataset_options: Mapping[str, Any] = attrs.field(factory=dict, converter=lambda d: dict(sorted(dict(d).items())))
    # instruments measuring the cells (prunekit.instruments) and their options: they enter the
    # identity of the cells they measure, not the protocol's fingerprint (the accuracies are the same)
    instruments: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    instrument_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=lambda d: dict(sorted(dict(d).items())))
    device: str = attrs.field(default="cpu", validator=attrs.validators.in_(DEVICES))  # where it is meant to run
    published: str | None = None  # name of the published table it reproduces (for the reader)
    # readings of the results, not parts of them (in no fingerprint, no cell identity): the
    # leaderboards' reference (Δ vs it) and the papers' numbers for this suite's cells
    reference_method: str = attrs.field(default=REFERENCE_METHOD, validator=attrs.validators.min_len(1))
    published_numbers: tuple[PublishedNumber, ...] = attrs.field(default=(), converter=_numbers)
    # the verdicts' equivalence margin (accuracy points): how small a check's effect must be
    # for "fails"; a reading of the results, not a part of them (not in the fingerprint)
    equivalence_margin: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    estimated_cell_seconds: float | None = None  # mean cost of one cell on ``device`` (--dry-run)
    source: str = attrs.field(default="", eq=False)  # the file it was loaded from

    def __attrs_post_init__(self) -> None:
        if not self.models or not self.sparsities or not self.seeds:
            raise ValueError("models, sparsities and seeds must not be empty")
        for s in self.sparsities:
            if not 0.0 <= s < 1.0:
                raise ValueError(f"sparsity {s} outside [0, 1)")

    def fingerprint(self) -> str:
        """Short hash of everything that defines the protocol: training, trainer, dataset and
        scoring overrides (left out while empty, so adding the table kept old fingerprints)."""
        payload: dict[str, Any] = {
            "protocol": canonical(self.protocol),  # new protocol options stay out at their defaults
            "trainer": self.trainer,
            "dataset": self.dataset,
        }
        if self.scoring:
            payload["scoring"] = dict(self.scoring)
        for table in ("model_options", "method_options", "check_options", "dataset_options"):  # left out while empty
            if getattr(self, table):
                payload[table] = canonical(getattr(self, table))
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def options_for_model(self, model: str) -> dict[str, Any]:
        """timm options of ``model``: the ``[model]`` keys, then its own ``[model.<name>]`` table."""
        common = {k: v for k, v in self.model_options.items() if not isinstance(v, Mapping)}
        own = self.model_options.get(model)
        return {**common, **(dict(own) if isinstance(own, Mapping) else {})}

    def options_for_method(self, method: str) -> dict[str, Any]:
        """Overrides of ``method``'s fields: ``[method_options."*"]`` (every method), then its own
        table (``scorer_options`` / ``schedule_options`` tables merged key by key)."""
        every = dict(self.method_options.get(ALL_METHODS, {}))
        own = dict(self.method_options.get(method, {}))
        merged = {**every, **own}
        for table in ("scorer_options", "schedule_options"):
            if table in every and table in own:
                merged[table] = {**dict(every[table]), **dict(own[table])}
        return merged


# ------------------------------------------------------------------------------- validation
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _str_list(v: Any) -> bool:
    return _list_of(lambda x: isinstance(x, str))(v)


# key -> (test, what it must be)
_SUITE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "dataset": (lambda v: isinstance(v, str) and bool(v), "a dataset name (string)"),
    "data_root": (lambda v: isinstance(v, str), "a folder path (string)"),
    "models": (lambda v: _str_list(v) and bool(v), "a non-empty list of model names"),
    "sparsities": (
        lambda v: _list_of(lambda x: _is_number(x) and 0.0 <= x < 1.0)(v) and bool(v),
        "a non-empty list of numbers in [0, 1), e.g. [0.9, 0.95]",
    ),
    "seeds": (lambda v: _list_of(lambda x: _is_int(x) and x >= 0)(v) and bool(v), "a non-empty list of integers >= 0"),
    "methods": (lambda v: v == ALL or _str_list(v), f'"{ALL}" or a list of method names'),
    "checks": (lambda v: v == ALL or _str_list(v), f'"{ALL}" or a list of check names'),
    "trainer": (lambda v: isinstance(v, str) and bool(v), "a trainer name (string)"),
    "device": (lambda v: v in DEVICES, " or ".join(f'"{d}"' for d in DEVICES)),
    "published": (lambda v: isinstance(v, str), "the name of a published table (string)"),
    "reference_method": (lambda v: isinstance(v, str) and bool(v), "a method name (string)"),
    "estimated_cell_seconds": (lambda v: _is_number(v) and v > 0, "a number of seconds > 0"),
    "equivalence_margin": (lambda v: _is_number(v) and v > 0, "a number of accuracy points > 0"),
    "instruments": (_str_list, "a list of instrument names (prunekit list instrument)"),
}
_PUBLISHED = "published_numbers"  # [[published_numbers]]: an array of tables
# key of a [[published_numbers]] entry -> (test, what it must be, required)
_PUBLISHED_FIELDS: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
    "model": (lambda v: isinstance(v, str) and bool(v), "a model name (string)", True),
    "method": (lambda v: isinstance(v, str) and bool(v), "a method name (string)", True),
    "sparsities": (
        lambda v: _list_of(lambda x: _is_number(x) and 0.0 <= x < 1.0)(v) and bool(v),
        "a non-empty list of numbers in [0, 1), e.g. [0.9, 0.95]",
        True,
    ),
    "accuracies": (
        lambda v: _list_of(lambda x: _is_number(x) and 0.0 <= x <= 100.0)(v) and bool(v),
        "a non-empty list of test accuracies in percent, one per sparsity",
        True,
    ),
    "source": (lambda v: isinstance(v, str) and bool(v), "the citation of the numbers (string)", True),
    "confirmed": (lambda v: isinstance(v, bool), "true or false", False),
    "metric": (lambda v: v in (BEST, FINAL), f'"{BEST}" or "{FINAL}"', False),
}
_TABLES = ("protocol", "scoring", "model", "method_options", "check_options", "dataset_options", "instrument_options")
_PROTOCOL_FIELDS = {f.name: f for f in attrs.fields(TrainConfig)}


def _protocol_test(field: attrs.Attribute) -> tuple[Callable[[Any], bool], str]:
    """Type test of one TrainConfig field, from its default's type."""
    default = field.default
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(default, int):
        return _is_int, "an integer"
    if isinstance(default, float):
        return _is_number, "a number"
    if isinstance(default, str):
        return (lambda v: isinstance(v, str)), "a string"
    if isinstance(default, tuple):
        return _list_of(_is_number), "a list of numbers"
    return (lambda v: True), "a value"  # pragma: no cover - a new field type


def _bad(source: str, key: str, value: Any, expected: str) -> PrunekitError:
    return PrunekitError(f"invalid suite {source}: {key!r} must be {expected}, got {value!r}")


def _unknown(source: str, key: str, allowed: Any) -> PrunekitError:
    return PrunekitError(f"unknown key {key!r} in suite {source}; allowed keys: {', '.join(sorted(allowed))}")


def _check_repeats(raw: Mapping[str, Any], source: str) -> None:
    """A name or number listed twice in a grid list is a mistake (a cell would run twice)."""
    for key in ("models", "sparsities", "seeds", "methods", "checks"):
        value = raw.get(key)
        if isinstance(value, list):
            repeated = sorted({repr(v) for v in value if value.count(v) > 1})
            if repeated:
                raise PrunekitError(f"invalid suite {source}: {key!r} lists {', '.join(repeated)} more than once")


def _check_protocol(protocol: Mapping[str, Any], source: str) -> None:
    """What the [protocol] values mean, beyond their types: a suite trains (epochs > 0), its
    milestones are fractions of the training in (0, 1), increasing, and apply to the multistep
    schedule only, gamma decays the learning rate (0 < gamma <= 1), warm-up ends before the
    training does. Each mistake is one line naming the key and what to write instead."""

    def bad(key: str, expected: str) -> PrunekitError:
        return _bad(source, f"protocol.{key}", protocol[key], expected)

    epochs = protocol.get("epochs", TrainConfig().epochs)
    if "epochs" in protocol and epochs <= 0:
        raise bad("epochs", "a number of epochs > 0 (a suite trains every cell)")
    if "milestones" in protocol:
        milestones = list(protocol["milestones"])
        if not all(0.0 < m < 1.0 for m in milestones):
            at = ", ".join(f"{m / epochs:g}" for m in milestones) if all(0 < m < epochs for m in milestones) else ""
            hint = f" (epochs {milestones} of {epochs} are [{at}])" if at else ""
            raise bad(
                "milestones",
                f"fractions of the training in (0, 1), e.g. [0.5, 0.75] to decay at half and three "
                f"quarters{hint}",
            )
        if milestones != sorted(set(milestones)):
            raise bad("milestones", "increasing fractions, each listed once")
        schedule = protocol.get("lr_schedule", TrainConfig().lr_schedule)
        if milestones and schedule != "multistep":
            raise bad(
                "milestones",
                f'empty with lr_schedule {schedule!r} (milestones apply to "multistep" only)',
            )
    if "gamma" in protocol and not 0.0 < protocol["gamma"] <= 1.0:
        raise bad("gamma", "a decay factor in (0, 1], e.g. 0.1")
    if "warmup_epochs" in protocol and protocol["warmup_epochs"] >= epochs > 0:
        raise bad("warmup_epochs", f"fewer than the {epochs} epochs of training")


def _published_numbers(raw: Any, dataset: str, source: str) -> tuple[PublishedNumber, ...]:
    """The ``[[published_numbers]]`` entries, one :class:`PublishedNumber` per sparsity, on
    the suite's dataset; each mistake one line naming the entry's key."""
    if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
        raise _bad(source, _PUBLISHED, raw, "an array of tables ([[published_numbers]])")
    out: list[PublishedNumber] = []
    seen: set[tuple[str, str, float]] = set()
    for i, entry in enumerate(raw):
        where = f"{_PUBLISHED}[{i}]"
        for key in entry:
            if key not in _PUBLISHED_FIELDS:
                raise _unknown(source, f"{where}.{key}", {f"{where}.{k}" for k in _PUBLISHED_FIELDS})
        for key, (test, expected, required) in _PUBLISHED_FIELDS.items():
            if key not in entry:
                if required:
                    raise PrunekitError(f"invalid suite {source}: the key {where}.{key!r} is missing")
            elif not test(entry[key]):
                raise _bad(source, f"{where}.{key}", entry[key], expected)
        sparsities, accuracies = entry["sparsities"], entry["accuracies"]
        if len(sparsities) != len(accuracies):
            raise _bad(source, f"{where}.accuracies", accuracies, f"one accuracy per sparsity ({len(sparsities)})")
        for sparsity, accuracy in zip(sparsities, accuracies, strict=True):
            cell = (entry["model"], entry["method"], float(sparsity))
            if cell in seen:
                raise PrunekitError(
                    f"invalid suite {source}: {where} gives {entry['method']} on {entry['model']} at "
                    f"sparsity {sparsity:g} a second published number"
                )
            seen.add(cell)
            out.append(
                PublishedNumber(
                    dataset=dataset,
                    model=entry["model"],
                    method=entry["method"],
                    sparsity=float(sparsity),
                    accuracy=float(accuracy),
                    source=entry["source"],
                    confirmed=entry.get("confirmed", False),
                    metric=entry.get("metric", BEST),
                )
            )
    return tuple(out)


def suite_from_mapping(raw: Mapping[str, Any], source: str) -> Suite:
    """Build a suite from parsed TOML; one-line errors naming the key and the file."""
    allowed = set(_SUITE_FIELDS) | set(_TABLES) | {_PUBLISHED}
    for key in raw:
        if key not in allowed:
            raise _unknown(source, key, allowed)
    for key in ("name", "dataset", "models", "sparsities", "seeds"):
        if key not in raw:
            raise PrunekitError(f"invalid suite {source}: the key {key!r} is missing")
    for key, value in raw.items():
        if key in _SUITE_FIELDS:
            test, expected = _SUITE_FIELDS[key]
            if not test(value):
                raise _bad(source, key, value, expected)
    _check_repeats(raw, source)
    tables: dict[str, dict[str, Any]] = {}
    for table in _TABLES:
        value = raw.get(table, {})
        if not isinstance(value, Mapping):
            raise _bad(source, table, value, "a table ([" + table + "])")
        tables[table] = dict(value)
    for key, value in tables["protocol"].items():
        if key not in _PROTOCOL_FIELDS:
            raise _unknown(source, f"protocol.{key}", {f"protocol.{k}" for k in _PROTOCOL_FIELDS})
        test, expected = _protocol_test(_PROTOCOL_FIELDS[key])
        if not test(value):
            raise _bad(source, f"protocol.{key}", value, expected)
    for key, value in tables["scoring"].items():
        if key not in SCORING_KEYS:
            raise _unknown(source, f"scoring.{key}", {f"scoring.{k}" for k in SCORING_KEYS})
        if not (_is_int(value) and value > 0):
            raise _bad(source, f"scoring.{key}", value, "an integer > 0")
    for table in ("method_options", "check_options", "instrument_options"):
        for name, options in tables[table].items():
            if not isinstance(options, Mapping):
                raise _bad(source, f"{table}.{name}", options, f"a table ([{table}.{name}]) of options")
    _check_protocol(tables["protocol"], source)
    try:
        protocol = TrainConfig(**tables["protocol"])
    except (TypeError, ValueError) as err:
        raise PrunekitError(f"invalid suite {source}: [protocol]: {err}") from None
    published = _published_numbers(raw.get(_PUBLISHED, []), raw["dataset"], source)
    fields = {k: v for k, v in raw.items() if k not in _TABLES and k != _PUBLISHED}
    try:
        return Suite(
            **fields,
            protocol=protocol,
            scoring=tables["scoring"],
            model_options=tables["model"],
            method_options=tables["method_options"],
            check_options=tables["check_options"],
            dataset_options=tables["dataset_options"],
            instrument_options=tables["instrument_options"],
            published_numbers=published,
            source=source,
        )
    except (TypeError, ValueError) as err:  # pragma: no cover - the checks above come first
        raise PrunekitError(f"invalid suite {source}: {err}") from None


def load_suite(path: str | Path) -> Suite:
    """A suite from its TOML file (its name defaults to the file's stem)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as err:
        raise PrunekitError(f"cannot read suite file {path}: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise PrunekitError(f"suite file {path} is not valid TOML: {err}") from None
    raw.setdefault("name", path.stem)
    return suite_from_mapping(raw, str(path))


def resolve_suite(name_or_path: str) -> Suite:
    """A registered suite by name (`prunekit list suite`), or a suite file (a .toml path)."""
    if name_or_path.endswith(".toml") or Path(name_or_path).is_file():
        return load_suite(name_or_path)
    from prunekit.plugins import get_plugins

    obj = get_plugins().registry("suite").get(name_or_path)
    if isinstance(obj, Suite):
        return obj
    return load_suite(obj)
