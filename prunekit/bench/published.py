"""Our runs beside the accuracies the papers publish for them.

The numbers are the suites' data (``[[published_numbers]]`` of a suite's TOML file, parsed into
:attr:`~prunekit.bench.suite.Suite.published_numbers`; ``benchmarks/suites/`` holds the paper
suites' numbers from ``paper-spec.md``, each with its source). A report compares its rows with
the numbers of their own suites, then of every installed suite (:func:`published_numbers`),
keyed by ``(dataset, model, method, sparsity)``.

Like with like: every published number says which of our stored metrics it matches
(``metric``). The authors' code of both papers logs the *best* test accuracy over the epochs
(``train_ticket.py`` prints ``best_acc``; GraSP's ``train_once`` logs "best acc"), so all of
them are compared with ``best_accuracy``, never with the final epoch's.

The verdict has a stated meaning: our runs are "consistent with published" when the published
number lies inside the 95 % t confidence interval of our mean over seeds (Student's t with
n − 1 degrees of freedom, through scipy), i.e. a two-sided one-sample t test at the 5 % level
does not reject "our mean equals the published mean"; otherwise they "differ from published".
The interval ignores the published mean's own seed noise, so the test is on the strict side.
With fewer than ``MIN_SEEDS`` seeds the verdict is "too few seeds". The min–max range over seeds
is reported beside it, for the reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
from scipy import stats

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import collect, sparsity_key
from prunekit.bench.suite import BEST, FINAL, PublishedNumber, Suite, resolve_suite
from prunekit.errors import PrunekitError
from prunekit.sentinels import CLEAN_CHECK

CONFIDENCE = 0.95
MIN_SEEDS = 3
CONSISTENT = "consistent with published"
DIFFERS = "differs from published"
TOO_FEW_SEEDS = "too few seeds"


Key = tuple[str, str, str, float]  # (dataset, model, method, sparsity key)


def _key(p: PublishedNumber) -> Key:
    return (p.dataset, p.model, p.method, sparsity_key(p.sparsity))


def installed_suites() -> list[Suite]:
    """Every installed suite that loads (one that does not is reported where it is run)."""
    from prunekit.plugins import get_plugins

    out = []
    for name in get_plugins().registry("suite").names():
        try:
            out.append(resolve_suite(name))
        except PrunekitError:
            continue
    return out


def published_numbers(suites: Iterable[Suite] = ()) -> dict[Key, PublishedNumber]:
    """The published numbers of ``suites``, then of every installed suite, by cell; where two
    suites give one cell a number, the first suite's counts (``suites`` before the installed
    ones, those in name order)."""
    out: dict[Key, PublishedNumber] = {}
    for suite in [*suites, *installed_suites()]:
        for p in suite.published_numbers:
            out.setdefault(_key(p), p)
    return out


def lookup(
    dataset: str, model: str, method: str, sparsity: float, numbers: Mapping[Key, PublishedNumber] | None = None
) -> PublishedNumber | None:
    """The published number for this cell among ``numbers`` (default: the installed suites')."""
    numbers = published_numbers() if numbers is None else numbers
    return numbers.get((dataset, model, method, sparsity_key(sparsity)))


@attrs.frozen(kw_only=True)
class Comparison:
    """Our clean runs of one published cell, in the published number's metric, beside it (points)."""

    protocol: str
    model: str
    dataset: str
    method: str
    sparsity: float
    metric: str  # the stored metric compared: the published number's own
    n: int
    measured_mean: float
    measured_sd: float | None  # sample SD; None with one seed
    measured_min: float
    measured_max: float
    ci_low: float | None  # the t confidence interval of our mean; None below MIN_SEEDS seeds
    ci_high: float | None
    confidence: float
    published: PublishedNumber
    difference: float  # measured − published
    verdict: str  # CONSISTENT, DIFFERS or TOO_FEW_SEEDS

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def mean_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The two-sided Student-t confidence interval of the mean of ``values`` (≥ 2 of them)."""
    x = np.asarray(values, dtype=float)
    mean, n = float(x.mean()), len(x)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def compare_published(
    rows: Sequence[ResultRow],
    numbers: Mapping[Key, PublishedNumber] | None = None,
    confidence: float = CONFIDENCE,
) -> list[Comparison]:
    """One :class:`Comparison` per (protocol, model, dataset, method, sparsity) of clean done
    runs that has a published number among ``numbers`` (default: the installed suites', see
    :func:`published_numbers`), each in the metric the number was published in (see the module
    docstring for the verdict). The comparison is only meaningful for runs under the paper's
    full protocol (the paper suites); the report says so."""
    numbers = published_numbers() if numbers is None else numbers
    out = []
    for metric in (BEST, FINAL):
        for (protocol, model, dataset, method, check, sparsity), per_seed in collect(rows, metric).items():
            if check != CLEAN_CHECK:
                continue
            published = lookup(dataset, model, method, sparsity, numbers)
            if published is None or published.metric != metric:
                continue
            values = np.asarray(list(per_seed.values()), dtype=float)
            mean = float(values.mean())
            low = high = None
            verdict = TOO_FEW_SEEDS
            if len(values) >= MIN_SEEDS:
                low, high = mean_interval(values, confidence)
                verdict = CONSISTENT if low - 1e-9 <= published.accuracy <= high + 1e-9 else DIFFERS
            out.append(
                Comparison(
                    protocol=protocol,
                    model=model,
                    dataset=dataset,
                    method=method,
                    sparsity=sparsity,
                    metric=metric,
                    n=len(values),
                    measured_mean=mean,
                    measured_sd=float(values.std(ddof=1)) if len(values) >= 2 else None,
                    measured_min=float(values.min()),
                    measured_max=float(values.max()),
                    ci_low=low,
                    ci_high=high,
                    confidence=confidence,
                    published=published,
                    difference=mean - published.accuracy,
                    verdict=verdict,
                )
            )
    return sorted(out, key=lambda c: (c.protocol, c.model, c.dataset, c.method, c.sparsity))
