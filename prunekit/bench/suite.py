"""Benchmark suites: declarative TOML files loaded into frozen attrs classes.

A suite fixes the dataset, models, sparsities, seeds, methods and checks (``"all"`` or a list),
the training protocol (a ``[protocol]`` table with the fields of
:class:`~prunekit.interfaces.TrainConfig`), the scoring overrides (a ``[scoring]`` table) and
the trainer, and the options of models (``[model]``), methods (``[method_options.<name>]``) and
checks (``[check_options.<name>]``) and the dataset (``[dataset_options]``), and the instruments
that measure its cells (``instruments = [...]`` with ``[instrument_options.<name>]``).

cattrs structures the parsed TOML into these classes: it checks every key's type (a number is
a number, a table a table) and refuses unknown keys; the classes' validators check what the
values mean (ranges, names listed once). Every mistake is one line naming the file and the
dotted key (``invalid suite foo.toml: 'protocol.epochs' must be an integer, got '1'``).

Two settings are readings of the results, not part of them (they enter neither the protocol's
fingerprint nor any cell's identity): ``reference_method``, the method every leaderboard
measures the others against (Δ), and ``[[published_numbers]]``, the accuracies the papers
report for this suite's cells, which the report puts beside ours (:class:`PublishedNumber`).
:meth:`Suite.fingerprint` identifies the protocol: every result row carries it, so results of
different protocols are never compared silently.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, get_origin, is_typeddict

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    is_sequence,
    mapping_structure_factory,
)
from cattrs.gen import make_dict_structure_fn, override
from cattrs.gen.typeddicts import make_dict_structure_fn as make_typeddict_structure_fn
from cattrs.v import transform_error

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
BEST, FINAL = "best_accuracy", "final_accuracy"  # the stored metrics a published number can match
SPARSITIES = "a non-empty list of numbers in [0, 1), e.g. [0.9, 0.95]"


class InvalidValue(ValueError):
    """A value that is not what it must be: ``problem`` says why (``must be ..., got ...``);
    ``key`` names it under the table that raised it ("" for the value itself)."""

    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(f"{key!r} {problem}" if key else problem)
        self.problem, self.key = problem, key


def _shown(value: Any) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)  # as the file writes it


def _must(test: Callable[[Any], bool], expected: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator: ``test(value)`` holds, or the error names the field and ``expected``."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not test(value):
            raise InvalidValue(f"must be {expected}, got {_shown(value)}", attribute.name)

    return check


def _once(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A grid list names each value once (a cell would run twice)."""
    if isinstance(value, tuple):
        repeated = sorted({repr(v) for v in value if value.count(v) > 1})
        if repeated:
            raise InvalidValue(f"lists {', '.join(repeated)} more than once", attribute.name)


def _counts(instance: Any, attribute: attrs.Attribute, value: Mapping[str, int]) -> None:
    for key, count in value.items():
        if count <= 0:
            raise InvalidValue(f"must be an integer > 0, got {count!r}", f"{attribute.name}.{key}")


def _sorted(table: Mapping[str, Any]) -> dict[str, Any]:
    return dict(sorted(dict(table).items()))


def _numbers(values: Iterable[PublishedNumber]) -> tuple[PublishedNumber, ...]:
    return tuple(values)


def _names(value: Any) -> tuple[str, ...] | str:
    if value == ALL:
        return ALL
    return tuple(value)


def _fractions(v: Sequence[float]) -> bool:
    return bool(v) and all(0.0 <= x < 1.0 for x in v)


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


def _one_per_sparsity(instance: PublishedTable, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if len(value) != len(instance.sparsities):
        raise InvalidValue(f"must be one accuracy per sparsity ({len(instance.sparsities)}), got {_shown(value)}", attribute.name)


@attrs.frozen(kw_only=True)
class PublishedTable:
    """One ``[[published_numbers]]`` table of a suite file: a paper's accuracies of one method
    on one model, one per sparsity (a :class:`PublishedNumber` each, on the suite's dataset)."""

    model: str = attrs.field(validator=_must(bool, "a model name"))
    method: str = attrs.field(validator=_must(bool, "a method name"))
    sparsities: tuple[float, ...] = attrs.field(validator=_must(_fractions, SPARSITIES))
    accuracies: tuple[float, ...] = attrs.field(
        validator=[
            _must(lambda v: bool(v) and all(0.0 <= x <= 100.0 for x in v), "a non-empty list of test accuracies in percent, one per sparsity"),
            _one_per_sparsity,
        ]
    )
    source: str = attrs.field(validator=_must(bool, "the citation of the numbers"))
    confirmed: bool = False
    metric: str = attrs.field(default=BEST, validator=_must(lambda v: v in (BEST, FINAL), f'"{BEST}" or "{FINAL}"'))


class Scoring(TypedDict, total=False):
    """The ``[scoring]`` table: overrides of the scorers' data request."""

    samples_per_class: int
    iterations: int


@attrs.frozen(kw_only=True)
class Suite:
    """A benchmark: what to run (the grid) and how to train (the protocol)."""

    name: str = attrs.field(validator=_must(bool, "a non-empty string"))
    description: str = ""
    dataset: str = attrs.field(validator=_must(bool, "a dataset name"))
    data_root: str | None = None
    models: tuple[str, ...] = attrs.field(converter=tuple, validator=[_must(bool, "a non-empty list of model names"), _once])
    sparsities: tuple[float, ...] = attrs.field(converter=tuple, validator=[_must(_fractions, SPARSITIES), _once])
    seeds: tuple[int, ...] = attrs.field(
        converter=tuple, validator=[_must(lambda v: bool(v) and min(v) >= 0, "a non-empty list of integers >= 0"), _once]
    )
    methods: tuple[str, ...] | str = attrs.field(default=ALL, converter=_names, validator=_once)
    checks: tuple[str, ...] | str = attrs.field(default=ALL, converter=_names, validator=_once)
    protocol: TrainConfig = TrainConfig()
    scoring: Mapping[str, int] = attrs.field(factory=dict, converter=_sorted, validator=_counts)
    trainer: str = attrs.field(default=DEFAULT_TRAINER, validator=_must(bool, "a trainer name"))
    # options of the recipe's parts, each entering the identity of the cells that use them:
    # timm.create_model options for every model ([model]) or one ([model.<name>]), overrides of
    # a method's fields ([method_options.<method>]) and a check's options ([check_options.<check>])
    model_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_sorted)
    method_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=_sorted)
    check_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=_sorted)
    dataset_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_sorted)
    # instruments measuring the cells (prunekit.instruments) and their options: they enter the
    # identity of the cells they measure, not the protocol's fingerprint (the accuracies are the same)
    instruments: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    instrument_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=_sorted)
    device: str = attrs.field(default="cpu", validator=_must(lambda v: v in DEVICES, " or ".join(f'"{d}"' for d in DEVICES)))
    published: str | None = None  # name of the published table it reproduces (for the reader)
    # readings of the results, not parts of them (in no fingerprint, no cell identity): the
    # leaderboards' reference (Δ vs it) and the papers' numbers for this suite's cells
    reference_method: str = attrs.field(default=REFERENCE_METHOD, validator=_must(bool, "a method name"))
    published_numbers: tuple[PublishedNumber, ...] = attrs.field(default=(), converter=_numbers)
    # the verdicts' equivalence margin (accuracy points): how small a check's effect must be
    # for "fails"; a reading of the results, not a part of them (not in the fingerprint)
    equivalence_margin: float = attrs.field(default=1.0, validator=_must(lambda v: v > 0, "a number of accuracy points > 0"))
    estimated_cell_seconds: float | None = attrs.field(  # mean cost of one cell on ``device`` (--dry-run)
        default=None, validator=_must(lambda v: v is None or v > 0, "a number of seconds > 0")
    )
    source: str = attrs.field(default="", eq=False)  # the file it was loaded from

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


# ------------------------------------------------------------------ structuring (cattrs)
def _of_type(test: Callable[[Any], bool], expected: str) -> Callable[[Any, Any], Any]:
    """A structure hook that takes a value as the file wrote it when ``test`` holds (cattrs
    would convert: ``str(3)``, ``int("1")``, a string into a list of its letters). A number
    stays as written, an integer an integer, as it always entered fingerprints and identities."""

    def structure(value: Any, _: Any) -> Any:
        if not test(value):
            raise InvalidValue(f"must be {expected}, got {value!r}")
        return value

    return structure


def _is_a(*kinds: type) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, kinds) and (bool in kinds or not isinstance(v, bool))


def _checked(factory: Any, test: Callable[[Any], bool], expected: str) -> Callable[[Any], Any]:
    """A hook factory: cattrs' ``factory``, for values that pass ``test`` first."""

    def hook(cl: Any) -> Callable[[Any, Any], Any]:
        structure, check = factory(cl, _CONVERTER), _of_type(test, expected)
        return lambda value, _: structure(check(value, cl), cl)

    return hook


def _names_hook(value: Any, _: Any) -> tuple[str, ...] | str:
    """``methods`` / ``checks``: "all" or a list of names."""
    if value == ALL:
        return ALL
    if isinstance(value, str):
        raise InvalidValue(f'must be "{ALL}" or a list of names, got {value!r}')
    return _CONVERTER.structure(value, tuple[str, ...])


_OVERRIDES: dict[type, dict[str, Any]] = {  # field -> cattrs.gen.AttributeOverride
    Suite: {
        "model_options": override(rename="model"),  # the [model] table
        "source": override(omit=True),  # where it was read from, not a key of the file
        "methods": override(struct_hook=_names_hook),
        "checks": override(struct_hook=_names_hook),
        "scoring": override(struct_hook=lambda value, _: _CONVERTER.structure(value, Scoring)),
    }
}
_TABLE, _LIST = _is_a(Mapping), _is_a(list, tuple)
_CONVERTER: cattrs.Converter = cattrs.Converter(forbid_extra_keys=True)
_CONVERTER.register_structure_hook(str, _of_type(_is_a(str), "a string"))
_CONVERTER.register_structure_hook(bool, _of_type(_is_a(bool), "true or false"))
_CONVERTER.register_structure_hook(int, _of_type(_is_a(int), "an integer"))
_CONVERTER.register_structure_hook(float, _of_type(_is_a(int, float), "a number"))
# a Literal's choices are its class's validator's to check (TrainConfig's name them)
_CONVERTER.register_structure_hook_func(lambda t: get_origin(t) is Literal, _of_type(_is_a(str), "a string"))
_CONVERTER.register_structure_hook_factory(is_sequence, _checked(homogenous_tuple_structure_factory, _LIST, "a list"))
_CONVERTER.register_structure_hook_factory(
    lambda t: is_mapping(t) and not is_typeddict(t), _checked(mapping_structure_factory, _TABLE, "a table")
)
_CONVERTER.register_structure_hook_factory(is_typeddict, _checked(make_typeddict_structure_fn, _TABLE, "a table"))
_CONVERTER.register_structure_hook_factory(
    attrs.has, _checked(lambda cl, c: make_dict_structure_fn(cl, c, **_OVERRIDES.get(cl, {})), _TABLE, "a table")
)


def _invalid(source: str, key: str, problem: str) -> PrunekitError:
    return PrunekitError(f"invalid suite {source}: {key!r} {problem}")


def _file_keys(cl: Any) -> list[str]:
    """The keys a table structured into ``cl`` may hold, as a suite file writes them."""
    if not attrs.has(cl):  # a TypedDict
        return list(cl.__annotations__)
    overrides = _OVERRIDES.get(cl, {})
    fields = [(f.name, overrides.get(f.name, override())) for f in attrs.fields(cl)]
    return [o.rename or name for name, o in fields if not o.omit]


def _line(err: BaseException, source: str, root: str) -> str:
    """cattrs' error (a tree of the errors of every key) as one line: an unknown key first,
    with the keys that come close; else the first error, its dotted key and what it must be."""
    found: list[BaseException] = []

    def keep(exc: BaseException, _: Any) -> str:  # transform_error gives the paths, in order
        found.append(exc)
        return ""

    paths = [line.removeprefix(" @ ").removeprefix(".") for line in transform_error(err, root, keep)]
    paths = [re.sub(r"\['([A-Za-z0-9_-]+)'\]", r".\1", p) for p in paths]  # ['snip'] -> .snip, as TOML
    errors = list(zip(paths, found, strict=True))
    path, exc = next((e for e in errors if isinstance(e[1], cattrs.ForbiddenExtraKeysError)), errors[0])

    def under(key: str) -> str:
        return f"{path}.{key}" if path and key else path or key

    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        key, allowed = sorted(exc.extra_fields)[0], sorted(_file_keys(exc.cl))
        close = [under(k) for k in difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return f"unknown key {under(key)!r} in suite {source}; {hint}allowed keys: {', '.join(map(under, allowed))}"
    if isinstance(exc, KeyError):
        return f"invalid suite {source}: the key {path!r} is missing"
    if isinstance(exc, InvalidValue):
        return str(_invalid(source, under(exc.key), exc.problem))
    where = f"[{path}]: " if path else ""  # a check of a table's class over several of its keys
    return f"invalid suite {source}: {where}{exc}"


def _structure(value: Any, cl: Any, source: str, root: str = "") -> Any:
    try:
        return _CONVERTER.structure(value, cl)
    except (cattrs.BaseValidationError, ValueError, TypeError) as err:
        raise PrunekitError(_line(err, source, root)) from None


# ------------------------------------------------------------------- what values mean
def _check_protocol(protocol: TrainConfig, written: Collection[str], source: str) -> None:
    """What the [protocol] values mean for a suite, beyond TrainConfig's own checks: a suite
    trains (epochs > 0), its milestones are fractions of the training in (0, 1), increasing, and
    apply to the multistep schedule only, gamma decays the learning rate (0 < gamma <= 1),
    warm-up ends before the training does. Each mistake is one line naming the key and what to
    write instead. ``written``: the keys the file gives (milestones are checked when given)."""

    def bad(key: str, expected: str) -> PrunekitError:
        return _invalid(source, f"protocol.{key}", f"must be {expected}, got {_shown(getattr(protocol, key))}")

    epochs = protocol.epochs
    if epochs <= 0:
        raise bad("epochs", "a number of epochs > 0 (a suite trains every cell)")
    if "milestones" in written:
        milestones = list(protocol.milestones)
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
        if milestones and protocol.lr_schedule != "multistep":
            raise bad(
                "milestones",
                f'empty with lr_schedule {protocol.lr_schedule!r} (milestones apply to "multistep" only)',
            )
    if not 0.0 < protocol.gamma <= 1.0:
        raise bad("gamma", "a decay factor in (0, 1], e.g. 0.1")
    if protocol.warmup_epochs >= epochs:
        raise bad("warmup_epochs", f"fewer than the {epochs} epochs of training")


def _published_numbers(tables: Sequence[PublishedTable], dataset: str, source: str) -> tuple[PublishedNumber, ...]:
    """One :class:`PublishedNumber` per sparsity of each table, on the suite's dataset; a cell
    given two numbers is an error naming the table."""
    out: list[PublishedNumber] = []
    seen: set[tuple[str, str, float]] = set()
    for i, table in enumerate(tables):
        for sparsity, accuracy in zip(table.sparsities, table.accuracies, strict=True):
            cell = (table.model, table.method, float(sparsity))
            if cell in seen:
                raise PrunekitError(
                    f"invalid suite {source}: published_numbers[{i}] gives {table.method} on {table.model} at "
                    f"sparsity {sparsity:g} a second published number"
                )
            seen.add(cell)
            out.append(
                PublishedNumber(
                    dataset=dataset, model=table.model, method=table.method, sparsity=float(sparsity),
                    accuracy=float(accuracy), source=table.source, confirmed=table.confirmed, metric=table.metric,
                )
            )
    return tuple(out)


def suite_from_mapping(raw: Mapping[str, Any], source: str) -> Suite:
    """Build a suite from parsed TOML; one-line errors naming the key and the file."""
    fields = dict(raw)
    published = fields.pop("published_numbers", [])
    suite: Suite = _structure(fields, Suite, source)
    _check_protocol(suite.protocol, fields.get("protocol", {}), source)
    tables = _structure(published, list[PublishedTable], source, root=".published_numbers")
    return attrs.evolve(suite, published_numbers=_published_numbers(tables, suite.dataset, source), source=source)


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
