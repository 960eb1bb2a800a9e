"""Published accuracies that the paper suites reproduce, and their comparison with our runs.

Numbers from ``paper-spec.md`` ("Published numbers"), test accuracy in percent, mean of the
authors' runs, keyed by ``(dataset, model, method, sparsity)`` with our names:

- Su et al. 2020, Table 1: random tickets (``random_ticket``) on VGG19-BN and ResNet32 (2×).
- Wang et al. 2020 (GraSP paper): SNIP and GraSP — an *unconfirmed* transcription.
- Dense baselines — *unconfirmed* (secondary source); listed with sparsity 0.0.

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
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from scipy import stats

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import collect, sparsity_key
from prunekit.sentinels import CLEAN_CHECK

SU2020 = "Su et al. 2020, Table 1"
WANG2020 = "Wang et al. 2020 (GraSP paper), as transcribed"
DENSE_SOURCE = "secondary source"
BEST, FINAL = "best_accuracy", "final_accuracy"  # the stored metrics a published number can match
CONFIDENCE = 0.95
MIN_SEEDS = 3
CONSISTENT = "consistent with published"
DIFFERS = "differs from published"
TOO_FEW_SEEDS = "too few seeds"


@attrs.frozen(kw_only=True)
class PublishedNumber:
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


def _table(
    source: str, confirmed: bool, table: dict[tuple[str, str], tuple[float, ...]]
) -> list[PublishedNumber]:
    """``{(model, method): (c10@90, c10@95, c10@98, c100@90, c100@95, c100@98)}``."""
    out = []
    for (model, method), values in table.items():
        cols = [(d, s) for d in ("cifar10", "cifar100") for s in (0.90, 0.95, 0.98)]
        for (dataset, sparsity), acc in zip(cols, values, strict=True):
            out.append(
                PublishedNumber(
                    dataset=dataset,
                    model=model,
                    method=method,
                    sparsity=sparsity,
                    accuracy=acc,
                    source=source,
                    confirmed=confirmed,
                )
            )
    return out


VGG, RESNET = "cifar_vgg19_bn", "cifar_resnet32"

PUBLISHED_NUMBERS: tuple[PublishedNumber, ...] = (
    *_table(
        SU2020,
        True,
        {
            (VGG, "random_ticket"): (93.77, 93.42, 92.45, 72.55, 71.37, 68.98),
            (RESNET, "random_ticket"): (92.97, 91.60, 89.10, 69.70, 66.82, 60.11),
        },
    ),
    *_table(
        WANG2020,
        False,
        {
            (VGG, "snip"): (93.63, 93.43, 92.05, 72.84, 71.83, 58.46),
            (VGG, "grasp"): (93.30, 93.04, 92.19, 71.95, 71.23, 68.90),
            (RESNET, "snip"): (92.59, 91.01, 87.51, 68.89, 65.22, 54.81),
            (RESNET, "grasp"): (92.38, 91.39, 88.81, 69.24, 66.50, 58.43),
        },
    ),
    *(
        PublishedNumber(
            dataset=dataset, model=model, method="dense", sparsity=0.0, accuracy=acc,
            source=DENSE_SOURCE, confirmed=False,
        )
        for model, dataset, acc in (
            (VGG, "cifar10", 94.23),
            (VGG, "cifar100", 74.16),
            (RESNET, "cifar10", 94.80),
            (RESNET, "cifar100", 74.64),
        )
    ),
)

PUBLISHED: dict[tuple[str, str, str, float], PublishedNumber] = {
    (p.dataset, p.model, p.method, sparsity_key(p.sparsity)): p for p in PUBLISHED_NUMBERS
}


def lookup(dataset: str, model: str, method: str, sparsity: float) -> PublishedNumber | None:
    """The published number for this cell, if the papers report one."""
    return PUBLISHED.get((dataset, model, method, sparsity_key(sparsity)))


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


def compare_published(rows: Sequence[ResultRow], confidence: float = CONFIDENCE) -> list[Comparison]:
    """One :class:`Comparison` per (protocol, model, dataset, method, sparsity) of clean done
    runs that has a published number, each in the metric the number was published in (see the
    module docstring for the verdict). The comparison is only meaningful for runs under the
    paper's full protocol (the paper suites); the report says so."""
    out = []
    for metric in (BEST, FINAL):
        for (protocol, model, dataset, method, check, sparsity), per_seed in collect(rows, metric).items():
            if check != CLEAN_CHECK:
                continue
            published = lookup(dataset, model, method, sparsity)
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
