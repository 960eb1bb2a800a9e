"""From a suite to the grid of cells: methods × applicable checks × sparsities × seeds × models."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from prunekit.bench.suite import ALL, Suite
from prunekit.cell import CellSpec
from prunekit.errors import PrunekitError
from prunekit.pipeline import instantiate, uses_data
from prunekit.plugins import get_plugins


@attrs.frozen(kw_only=True)
class Skipped:
    """A method × check pair that is not run, and why."""

    method: str
    check: str
    reason: str


@attrs.frozen(kw_only=True)
class Grid:
    cells: tuple[CellSpec, ...]
    skipped: tuple[Skipped, ...]

    def estimate_seconds(self, cell_seconds: float) -> float:
        return len(self.cells) * cell_seconds


def _validated(kind: str, names: Sequence[str]) -> list[str]:
    registry = get_plugins().registry(kind)
    for name in names:
        registry.get(name)  # unknown names: one line with suggestions
    return list(dict.fromkeys(names))


def expand(
    suite: Suite,
    *,
    all_methods: bool = False,
    methods: Sequence[str] | None = None,
    checks: Sequence[str] | None = None,
    sparsities: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
) -> Grid:
    """The cells of ``suite``, narrowed by the filters.

    ``all_methods`` takes every registered method (else the suite's list). The clean check
    ``none`` is always part of the grid, since every verdict compares with it; ``dense`` runs once
    per model and seed. Pairs whose check does not apply to the method are listed as skipped.
    """
    plugins = get_plugins()
    if methods:
        method_names = _validated("method", methods)
    elif all_methods or suite.methods == ALL:
        method_names = plugins.registry("method").names()
    else:
        method_names = _validated("method", suite.methods)  # type: ignore[arg-type]
    if checks:
        check_names = _validated("sanity_check", checks)
    elif suite.checks == ALL:
        check_names = plugins.registry("sanity_check").names()
    else:
        check_names = _validated("sanity_check", suite.checks)  # type: ignore[arg-type]
    check_names = ["none", *[c for c in check_names if c != "none"]]
    sparsity_values = list(sparsities) if sparsities else list(suite.sparsities)
    for s in sparsity_values:
        if not 0.0 <= s < 1.0:
            raise PrunekitError(f"sparsity must be in [0, 1), got {s}")
    seed_values = list(seeds) if seeds is not None and len(seeds) else list(suite.seeds)

    pairs: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    for m in method_names:
        method = plugins.registry("method").get(m)
        for c in check_names:
            if c == "none":
                pairs.append((m, c))
                continue
            reason = instantiate("sanity_check", c).not_applicable(method, uses_data(method))
            if reason:
                skipped.append(Skipped(method=m, check=c, reason=reason))
            else:
                pairs.append((m, c))
    cells: list[CellSpec] = []
    common = dict(dataset=suite.dataset, protocol=suite.protocol, trainer=suite.trainer, data_root=suite.data_root)
    for model in suite.models:
        for seed in seed_values:
            if ("dense", "none") in pairs:
                cells.append(CellSpec(model=model, method="dense", check="none", sparsity=0.0, seed=seed, **common))
            for sparsity in sparsity_values:
                # one (method, sparsity, seed) after another, so a ticket is reused by its checks
                for m, c in pairs:
                    if m == "dense":
                        continue
                    cells.append(CellSpec(model=model, method=m, check=c, sparsity=sparsity, seed=seed, **common))
    if not cells:
        raise PrunekitError(
            f"the grid of suite {suite.name!r} is empty with these filters; widen --methods/--checks/--sparsities/--seeds"
        )
    return Grid(cells=tuple(cells), skipped=tuple(skipped))
