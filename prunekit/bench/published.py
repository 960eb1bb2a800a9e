"""Published accuracies that the paper suites reproduce, and their comparison with our runs.

Numbers from ``paper-spec.md`` ("Published numbers"), test accuracy in percent, mean of the
authors' runs, keyed by ``(dataset, model, method, sparsity)`` with our names:

- Su et al. 2020, Table 1: random tickets (``random_ticket``) on VGG19-BN and ResNet32 (2×).
- Wang et al. 2020 (GraSP paper): SNIP and GraSP — an *unconfirmed* transcription.
- Dense baselines — *unconfirmed* (secondary source); listed with sparsity 0.0.

A measured value is "inside the spread" when the published number lies within the measured
mean ± 2 sample SD over seeds (about 95 % of runs if seed-to-seed noise is normal). That needs
at least two seeds; with one the answer is None (unknown). The min–max range over seeds is
reported beside it, for the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import CLEAN_CHECK, collect, sparsity_key

SU2020 = "Su et al. 2020, Table 1"
WANG2020 = "Wang et al. 2020 (GraSP paper), as transcribed"
DENSE_SOURCE = "secondary source"
SPREAD_SDS = 2.0


@attrs.frozen(kw_only=True)
class PublishedNumber:
    dataset: str
    model: str
    method: str
    sparsity: float
    accuracy: float  # percent
    source: str
    confirmed: bool

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
    """Our clean runs of one published cell beside the published number (points)."""

    protocol: str
    model: str
    dataset: str
    method: str
    sparsity: float
    n: int
    measured_mean: float
    measured_sd: float | None
    measured_min: float
    measured_max: float
    published: PublishedNumber
    difference: float  # measured − published
    inside_spread: bool | None  # published within mean ± 2 SD; None with one seed

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def compare_published(rows: Sequence[ResultRow], metric: str = "final_accuracy") -> list[Comparison]:
    """One :class:`Comparison` per (protocol, model, dataset, method, sparsity) of clean done
    runs that has a published number. The comparison is only meaningful for runs under the
    paper's full protocol (the paper suites); the report says so."""
    out = []
    for (protocol, model, dataset, method, check, sparsity), per_seed in sorted(collect(rows, metric).items()):
        if check != CLEAN_CHECK:
            continue
        published = lookup(dataset, model, method, sparsity)
        if published is None:
            continue
        values = np.asarray(list(per_seed.values()), dtype=float)
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if len(values) >= 2 else None
        inside = None if sd is None else bool(abs(published.accuracy - mean) <= SPREAD_SDS * sd + 1e-9)
        out.append(
            Comparison(
                protocol=protocol,
                model=model,
                dataset=dataset,
                method=method,
                sparsity=sparsity,
                n=len(values),
                measured_mean=mean,
                measured_sd=sd,
                measured_min=float(values.min()),
                measured_max=float(values.max()),
                published=published,
                difference=mean - published.accuracy,
                inside_spread=inside,
            )
        )
    return out
