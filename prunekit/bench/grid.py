"""From a suite to the grid of cells: methods × applicable checks × sparsities × seeds × models.

A check that does not apply to a method (``SanityCheck.not_applicable``) is never run: the pair
is listed in :attr:`Grid.skipped` with its reason, and :attr:`Grid.not_applicable` holds the
cells it would have had, so the store and the reports can show them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from prunekit.bench.suite import ALL, ALL_METHODS, Suite
from prunekit.cell import CellSpec, resolve_method_options
from prunekit.errors import PrunekitError, UnknownNameError
from prunekit.interfaces import Method
from prunekit.pipeline import check_sparsity, instantiate, uses_data
from prunekit.plugins import get_plugins
from prunekit.sentinels import CLEAN_CHECK, DENSE_METHOD

MAX_SEED = 2**63 - 1  # torch.manual_seed's range


@attrs.frozen(kw_only=True)
class Skipped:
    """A method × check pair that is not run, and why."""

    method: str
    check: str
    reason: str


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(values)


def _ints(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class Filters:
    """What the command line narrows a suite to (empty = the suite's own lists).

    ``everything`` (``--all``) takes every installed method and every installed check instead of
    the suite's lists; ``methods`` / ``checks`` still narrow it.
    """

    everything: bool = False
    methods: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    checks: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    sparsities: tuple[float, ...] = attrs.field(default=(), converter=_floats)
    seeds: tuple[int, ...] = attrs.field(default=(), converter=_ints)


@attrs.frozen(kw_only=True)
class Grid:
    cells: tuple[CellSpec, ...]  # to run, in order (a ticket's checks follow it)
    skipped: tuple[Skipped, ...]  # (method, check) pairs that do not apply
    not_applicable: tuple[tuple[CellSpec, str], ...] = ()  # the cells of those pairs, with the reason

    def estimate_seconds(self, cell_seconds: float | None) -> float | None:
        return estimate_seconds(self.cells, cell_seconds)


def estimate_seconds(cells: Sequence[CellSpec], cell_seconds: float | None) -> float | None:
    """Rough cost of running ``cells`` one after another (None when the cost per cell is unknown)."""
    if cell_seconds is None:
        return None
    return len(cells) * cell_seconds


def _validated(kind: str, names: Sequence[str]) -> list[str]:
    registry = get_plugins().registry(kind)
    for name in names:
        if kind == "sanity_check" and name == CLEAN_CHECK:
            continue
        registry.get(name)  # unknown names: one line with suggestions
    return list(dict.fromkeys(names))


def check_reference_method(suite: Suite) -> None:
    """The suite's ``reference_method`` names an installed method: one line naming the key and
    the file otherwise (a suite loads before the plugins are all known, so it is checked here,
    with the rest of the grid's names)."""
    try:
        get_plugins().registry("method").get(suite.reference_method)
    except UnknownNameError as err:
        raise PrunekitError(f"invalid suite {suite.source or suite.name}: 'reference_method': {err}") from None


def expand(suite: Suite, filters: Filters = Filters()) -> Grid:
    """The cells of ``suite``, narrowed by ``filters``.

    The clean check ``none`` is always part of the grid, since every verdict compares with it;
    ``dense`` runs once per model and seed (check ``none``, sparsity recorded as 0.0). Pairs
    whose check does not apply to the method are listed as skipped, with their reason.
    """
    plugins = get_plugins()
    check_reference_method(suite)
    if filters.methods:
        method_names = _validated("method", filters.methods)
    elif filters.everything or suite.methods == ALL:
        method_names = plugins.registry("method").names()
    else:
        method_names = _validated("method", suite.methods)
    if filters.checks:
        check_names = _validated("sanity_check", filters.checks)
    elif filters.everything or suite.checks == ALL:
        check_names = plugins.registry("sanity_check").names()
    else:
        check_names = _validated("sanity_check", suite.checks)
    check_names = [CLEAN_CHECK, *[c for c in check_names if c != CLEAN_CHECK]]
    sparsities = [check_sparsity(s) for s in dict.fromkeys(filters.sparsities or suite.sparsities)]
    seeds = list(dict.fromkeys(filters.seeds or suite.seeds))
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise PrunekitError(f"seeds must be integers in 0..2^63-1, got {seed}")

    pairs: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    for name in suite.method_options:  # a typo in a table name is an error, not a no-op
        if name != ALL_METHODS:
            plugins.registry("method").get(name)
    for name in suite.check_options:
        plugins.registry("sanity_check").get(name)
    methods: dict[str, Method] = {}
    for m in method_names:
        method = resolve_method_options(plugins.registry("method").get(m), suite.options_for_method(m))
        methods[m] = method
        for c in check_names:
            if c == CLEAN_CHECK:
                pairs.append((m, c))
                continue
            check = instantiate("sanity_check", c, suite.check_options.get(c, {}))
            reason = check.not_applicable(method, uses_data(method))
            if reason:
                skipped.append(Skipped(method=m, check=c, reason=reason))
            else:
                pairs.append((m, c))
    measure = _instruments(suite)
    cells: list[CellSpec] = []
    not_applicable: list[tuple[CellSpec, str]] = []
    for model in suite.models:
        common: dict[str, Any] = {
            "dataset": suite.dataset,
            "protocol": suite.protocol,
            "trainer": suite.trainer,
            "data_root": suite.data_root,
            "model_options": suite.options_for_model(model),
            "dataset_options": suite.dataset_options,
        }
        for seed in seeds:
            if (DENSE_METHOD, CLEAN_CHECK) in pairs:
                cells.append(
                    CellSpec(
                        model=model, method=DENSE_METHOD, check=CLEAN_CHECK, sparsity=0.0, seed=seed,
                        method_options=suite.options_for_method(DENSE_METHOD),
                        instruments=measure(methods[DENSE_METHOD], CLEAN_CHECK), **common,
                    )
                )
            for sparsity in sparsities:
                # one (method, sparsity, seed) after another, so a ticket is reused by its checks
                for m, c in pairs:
                    if m != DENSE_METHOD:
                        cells.append(
                            CellSpec(
                                model=model, method=m, check=c, sparsity=sparsity, seed=seed,
                                method_options=suite.options_for_method(m),
                                check_options=suite.check_options.get(c, {}),
                                instruments=measure(methods[m], c), **common,
                            )
                        )
                for s in skipped:
                    if s.method != DENSE_METHOD:
                        spec = CellSpec(
                            model=model, method=s.method, check=s.check, sparsity=sparsity, seed=seed, **common
                        )
                        not_applicable.append((spec, s.reason))
            for s in skipped:
                if s.method == DENSE_METHOD:
                    spec = CellSpec(model=model, method=DENSE_METHOD, check=s.check, sparsity=0.0, seed=seed, **common)
                    not_applicable.append((spec, s.reason))
    if not cells:
        raise PrunekitError(
            f"the grid of suite {suite.name!r} is empty with these filters "
            f"(methods: {', '.join(method_names) or 'none'}); widen --methods/--checks/--sparsities/--seeds"
        )
    return Grid(cells=tuple(cells), skipped=tuple(skipped), not_applicable=tuple(not_applicable))


def _instruments(suite: Suite) -> Callable[[Method, str], dict[str, dict[str, Any]]]:
    """Which of the suite's instruments (with their options) measure a cell of a method under a
    check; every name and option is checked first (one-line errors)."""
    from prunekit.instruments import applies, instantiate_instrument

    names = list(dict.fromkeys(suite.instruments))
    for name in suite.instrument_options:
        if name not in names:
            get_plugins().registry("instrument").get(name)  # an unknown name: one line with suggestions
            raise PrunekitError(
                f"the suite sets [instrument_options.{name}] but does not list {name!r} in instruments; add it or remove the table"
            )
    built = {name: instantiate_instrument(name, suite.instrument_options.get(name, {})) for name in names}

    def measure(method: Method, check: str) -> dict[str, dict[str, Any]]:
        return {
            name: dict(suite.instrument_options.get(name, {}))
            for name, instrument in built.items()
            if applies(instrument, method, check)
        }

    return measure
