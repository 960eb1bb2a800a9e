"""Statistics over benchmark results: paired check effects with verdicts, the sequential rule
that decides how many seeds a verdict needs, and rankings.

Pure functions on ``list[ResultRow]`` (and, for the sequential rule, on plain sequences of
paired differences). Only rows with status ``"done"`` and a value for the metric count.
Results are never pooled across protocol fingerprints, models or datasets: every function
groups by ``(protocol, model, dataset)`` first. Distributions come from scipy.

Units: a :class:`~prunekit.bench.records.ResultRow` holds accuracies as fractions in [0, 1]
(what trainers report); everything returned here is in accuracy *points* (percent), so an
effect of 1.0 is one percentage point.

Verdicts of a check on a method at one sparsity (see :func:`paired_test`). The effect is
Δ = acc(clean) − acc(with check), paired by seed, so Δ > 0 means the check lowers accuracy.
With a level ``alpha`` (default 0.05) and an equivalence margin ``margin`` (default ±1 point):

- **passes**: a one-sided t test finds that the check lowers accuracy (H0: Δ ≤ 0). A check
  that does not lower accuracy is called "passes" with probability at most ``alpha``.
- **fails**: equivalence by two one-sided t tests (TOST; H0: |Δ| ≥ margin). A check that
  changes accuracy by ``margin`` points or more is called "fails" with probability at most
  ``alpha``. When both this and "passes" hold (a real but small drop), the verdict is "fails":
  the drop is smaller than what the suite counts as a change.
- **raises accuracy**: a one-sided t test finds that the check raises accuracy (H0: Δ ≥ 0),
  and equivalence does not hold.
- **inconclusive**: none of these; **too few seeds**: fewer than :data:`MIN_SEEDS` paired
  seeds, no test and no interval.

The interval shown with an effect is the two-sided ``1 − 2·alpha`` (90 %) t interval, which
reads the verdict off directly: passes ⇔ it lies above 0; raises accuracy ⇔ below 0; fails ⇔
inside (−margin, +margin). The error rates hold per verdict and per (method, check, sparsity);
they are not corrected for the many pairs of a report. With ``n ≥ 3`` seeds whose differences
are all equal the t test degenerates: the verdict follows that one difference (an effect
above 0 passes, one inside the margin fails), the interval is not shown and the note says
"no seed variance".

Leaderboard intervals (mean accuracy ± t interval at ``confidence``, default 95 %) need at
least :data:`MIN_SEEDS` seeds as well, and are clipped to [0, 100] points (marked
``ci_clipped``): they are not computed on a bounded scale.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal, TypeVar

import attrs
import numpy as np
from scipy import special, stats

from prunekit.bench.records import ResultRow
from prunekit.defaults import REFERENCE_METHOD
from prunekit.sentinels import CLEAN_CHECK, DENSE_METHOD

ACCURACY_POINTS = 100.0  # fraction -> percentage points
DEFAULT_MARGIN = 1.0  # equivalence margin, points
DEFAULT_TOLERANCE = DEFAULT_MARGIN  # the name `prunekit report --tolerance` uses
DEFAULT_ALPHA = 0.05  # error rate of each verdict
DEFAULT_CONFIDENCE = 0.95  # leaderboard intervals
MIN_SEEDS = 3  # no test and no interval from fewer seeds
SEEDS_NEEDED_LIMIT = 100_000  # beyond this we say "not within reach" (None)
_ZERO_SD = 1e-9  # relative: differences of accuracies equal up to float rounding

Verdict = Literal["passes", "fails", "raises accuracy", "inconclusive", "too few seeds"]
VERDICTS: tuple[str, ...] = ("passes", "fails", "raises accuracy", "inconclusive", "too few seeds")
DECIDED: frozenset[str] = frozenset({"passes", "fails", "raises accuracy"})
GroupKey = tuple[str, str, str]  # (protocol, model, dataset)
K = TypeVar("K", bound=Hashable)


# ------------------------------------------------------------------------- small helpers
def t_quantile(p: float, df: float) -> float:
    """Student-t quantile (scipy)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    return float(special.stdtrit(df, p))


def sparsity_key(sparsity: float) -> float:
    """Sparsities are grouped after rounding to 6 decimals (0.9 and 0.90000001 are one)."""
    return round(float(sparsity), 6)


def _sample_sd(arr: np.ndarray) -> float:
    """Sample SD; exactly 0.0 when the values agree up to float rounding."""
    sd = float(arr.std(ddof=1))
    return 0.0 if sd <= _ZERO_SD * max(1.0, float(np.abs(arr).max())) else sd


@attrs.frozen(kw_only=True)
class Summary:
    """Mean, sample SD and two-sided t interval of a handful of numbers.

    The interval is None with fewer than :data:`MIN_SEEDS` values (``sd`` is given from 2) and
    when every value is the same (``sd == 0``: "no seed variance"). ``ci_clipped`` says that
    the interval was cut at the bounds it was computed with (accuracies: [0, 100]).
    """

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    ci_clipped: bool = False

    @property
    def no_variance(self) -> bool:
        return self.n >= MIN_SEEDS and self.sd == 0.0


def summarize(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> Summary:
    """Mean ± t_{(1+c)/2, n-1} · SD/√n, clipped to ``bounds`` when given; see :class:`Summary`."""
    n = len(values)
    if n == 0:
        return Summary(n=0, mean=None, sd=None, ci_low=None, ci_high=None)
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if n < 2:
        return Summary(n=1, mean=mean, sd=None, ci_low=None, ci_high=None)
    sd = _sample_sd(arr)
    if n < MIN_SEEDS or sd == 0.0:
        return Summary(n=n, mean=mean, sd=sd, ci_low=None, ci_high=None)
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    clipped = False
    if bounds is not None:
        clipped = low < bounds[0] or high > bounds[1]
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Summary(n=n, mean=mean, sd=sd, ci_low=low, ci_high=high, ci_clipped=clipped)


def _check_settings(margin: float, alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if margin < 0.0:
        raise ValueError(f"the equivalence margin must be >= 0 points, got {margin}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


CellKey = tuple[str, str, str, str, str, float]  # protocol, model, dataset, method, check, sparsity


def collect(
    rows: Iterable[ResultRow], metric: str = "final_accuracy"
) -> dict[CellKey, dict[int, float]]:
    """``(protocol, model, dataset, method, check, sparsity) -> {seed: metric in points}``,
    seeds in ascending order.

    Only status "done" rows with a finite metric. A row key seen twice (the same cell listed
    by two suites) counts once; two different rows for the same seed are averaged.
    """
    seen: set[str] = set()
    values: dict[CellKey, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.status != "done" or row.key in seen:
            continue
        value = getattr(row, metric)
        if value is None or not math.isfinite(value):
            continue
        seen.add(row.key)
        cell = (
            row.protocol,
            row.model,
            row.dataset,
            row.method,
            row.check,
            sparsity_key(row.sparsity),
        )
        values[cell][int(row.seed)].append(float(value) * ACCURACY_POINTS)
    return {
        cell: {seed: float(np.mean(v)) for seed, v in sorted(per_seed.items())}
        for cell, per_seed in values.items()
    }


# ------------------------------------------------------------------ test-set granularity
@attrs.frozen(kw_only=True)
class Granularity:
    """How finely a test split measures accuracy: ``n_test`` images, so one image is
    ``100 / n_test`` points. ``source`` is "recorded" (the rows' environment holds
    ``test_size``) or "inferred" (the smallest size every stored accuracy is a multiple of
    1/size of: exact when the accuracies are plain counts over the split, a lower bound when
    only a few rows exist)."""

    dataset: str
    n_test: int
    points: float
    source: Literal["recorded", "inferred"]

    def text(self) -> str:
        how = "" if self.source == "recorded" else " (inferred from the accuracies)"
        return (
            f"{self.dataset}: {self.n_test} test images{how}, one image = {self.points:.3g} points"
        )


def _accuracies(row: ResultRow) -> Iterable[float]:
    for value in (row.final_accuracy, row.best_accuracy):
        if value is not None:
            yield value
    for record in row.history:
        value = record.get("test_accuracy")
        if value is not None:
            yield value


def accuracy_granularity(
    rows: Iterable[ResultRow], *, max_size: int = 1_000_000
) -> list[Granularity]:
    """One :class:`Granularity` per dataset of the done rows (sorted by dataset).

    Uses ``environment["test_size"]`` when the rows record it; else infers the size as the
    least common multiple of the accuracies' denominators (each accuracy read as the nearest
    fraction with denominator ≤ ``max_size``). A dataset whose accuracies are not such
    fractions (LCM above ``max_size``) is left out.
    """
    recorded: dict[str, int] = {}
    lcm: dict[str, int] = {}
    for row in rows:
        if row.status != "done":
            continue
        size = row.environment.get("test_size") if isinstance(row.environment, Mapping) else None
        if isinstance(size, int) and size > 0:
            recorded[row.dataset] = size
            continue
        for value in _accuracies(row):
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                continue
            denominator = Fraction(value).limit_denominator(max_size).denominator
            lcm[row.dataset] = math.lcm(lcm.get(row.dataset, 1), denominator)
    out = [
        Granularity(dataset=d, n_test=n, points=ACCURACY_POINTS / n, source="recorded")
        for d, n in recorded.items()
    ]
    out += [
        Granularity(dataset=d, n_test=n, points=ACCURACY_POINTS / n, source="inferred")
        for d, n in lcm.items()
        if d not in recorded and 1 < n <= max_size
    ]
    return sorted(out, key=lambda g: g.dataset)


# ------------------------------------------------------------------------- paired tests
@attrs.frozen(kw_only=True)
class PairedTest:
    """The three one-sided t tests on paired differences Δ (points) at level ``alpha``.

    ``p_lowers``: P-value of H0 Δ ≤ 0 (small: the check lowers accuracy); ``p_raises``: of
    H0 Δ ≥ 0; ``p_equivalent``: TOST P-value of H0 |Δ| ≥ margin (the larger of its two
    one-sided P-values). ``ci_*``: the two-sided ``1 − 2·alpha`` t interval. All None below
    :data:`MIN_SEEDS` seeds; the interval is None too when there is no seed variance.
    """

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    p_lowers: float | None
    p_raises: float | None
    p_equivalent: float | None
    verdict: Verdict
    margin: float
    alpha: float

    @property
    def no_variance(self) -> bool:
        return self.n >= MIN_SEEDS and self.sd == 0.0

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED


def paired_test(
    diffs: Sequence[float], *, margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA
) -> PairedTest:
    """Verdict on paired differences (clean − with check, points); see the module docstring."""
    _check_settings(margin, alpha)
    n = len(diffs)
    arr = np.asarray(diffs, dtype=float)
    mean = float(arr.mean()) if n else None
    sd = _sample_sd(arr) if n >= 2 else None
    common: dict[str, Any] = {"n": n, "mean": mean, "sd": sd, "margin": margin, "alpha": alpha}
    if n < MIN_SEEDS:
        verdict: Verdict = "inconclusive" if n == 0 else "too few seeds"
        return PairedTest(
            **common,
            ci_low=None,
            ci_high=None,
            p_lowers=None,
            p_raises=None,
            p_equivalent=None,
            verdict=verdict,
        )
    assert mean is not None and sd is not None
    ci_low = ci_high = None
    if sd == 0.0:  # the t statistics are ±inf (or 0/0 at a zero mean): their limits
        p_lowers = 0.0 if mean > 0 else 1.0
        p_raises = 0.0 if mean < 0 else 1.0
        p_equivalent = 0.0 if abs(mean) < margin else 1.0
    else:
        df = n - 1
        se = sd / math.sqrt(n)
        # scipy.special's t distribution: the same numbers as scipy.stats.t, without its
        # per-call overhead (the sequential rule runs these tests at every look)
        p_lowers = float(special.stdtr(df, -mean / se))
        p_raises = float(special.stdtr(df, mean / se))
        p_equivalent = max(
            float(special.stdtr(df, -(mean + margin) / se)),
            float(special.stdtr(df, (mean - margin) / se)),
        )
        half = float(special.stdtrit(df, 1.0 - alpha)) * se
        ci_low, ci_high = mean - half, mean + half
    if p_equivalent < alpha:
        verdict = "fails"
    elif p_lowers < alpha:
        verdict = "passes"
    elif p_raises < alpha:
        verdict = "raises accuracy"
    else:
        verdict = "inconclusive"
    return PairedTest(
        **common,
        ci_low=ci_low,
        ci_high=ci_high,
        p_lowers=p_lowers,
        p_raises=p_raises,
        p_equivalent=p_equivalent,
        verdict=verdict,
    )


def _decides(mean: float, sd: float, m: int, margin: float, alpha: float) -> bool:
    """Would m seeds with this mean and SD decide a verdict (t tests at ``alpha``)?"""
    tq = t_quantile(1.0 - alpha, m - 1)
    se = sd / math.sqrt(m)
    return abs(mean) / se > tq or (margin - abs(mean)) / se > tq


def seeds_needed(
    mean: float, sd: float, n: int, *, margin: float = DEFAULT_MARGIN, alpha: float = DEFAULT_ALPHA
) -> int | None:
    """Smallest number of seeds (> n, ≥ :data:`MIN_SEEDS`) that would decide a verdict if the
    mean and SD of the differences stayed as observed: a one-sided test on either side of 0 or
    TOST. None when ``sd`` is 0, when the mean is 0 and the margin 0, or when more than
    :data:`SEEDS_NEEDED_LIMIT` seeds would be needed. A planning figure, not a promise: the
    next seeds move the mean and SD."""
    if sd <= 0.0 or (mean == 0.0 and margin == 0.0):
        return None
    lo = max(n, MIN_SEEDS - 1)  # undecided (or below the minimum)
    hi = lo + 1
    while not _decides(mean, sd, hi, margin, alpha):
        lo, hi = hi, hi * 2
        if hi > SEEDS_NEEDED_LIMIT:
            return None
    while hi - lo > 1:  # monotone in m: the standard error and the t quantile shrink with m
        mid = (lo + hi) // 2
        if _decides(mean, sd, mid, margin, alpha):
            hi = mid
        else:
            lo = mid
    return hi


# ------------------------------------------------------------------- the sequential rule
@attrs.frozen(kw_only=True)
class Decision:
    """What the sequential rule says about one pair after the seeds so far.

    ``status``: "decided" (``verdict`` is passes / fails / raises accuracy, reached at the
    first ``n`` seeds), "undecided" (run more seeds: fewer than ``max_seeds`` so far) or
    "exhausted" (``max_seeds`` seeds and no verdict: inconclusive). ``test`` is the paired test
    at ``n`` seeds and the design's per-look level.
    """

    status: Literal["decided", "undecided", "exhausted"]
    verdict: Verdict
    n: int
    test: PairedTest
    note: str


@functools.lru_cache(maxsize=32)
def pocock_level(
    alpha: float, min_seeds: int, max_seeds: int, paths: int = 200_000, seed: int = 0
) -> float:
    """The per-look one-sided level α′ of a Pocock design on the t statistic, calibrated by
    simulation: with i.i.d. normal differences of mean 0, the chance that the one-sided t test
    at level α′ rejects at *any* n in ``min_seeds..max_seeds`` is ``alpha``.

    The t statistics of one sequence of differences do not depend on its scale, so ``paths``
    standard-normal sequences (a fixed generator ``seed``) give that chance for every SD. The
    quantile is taken at ``alpha · (1 − 3·rse)``, three relative standard errors of the
    simulated rate below ``alpha``, so the rate holds despite simulation error.
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not 2 <= min_seeds <= max_seeds:
        raise ValueError(f"need 2 <= min_seeds <= max_seeds, got {min_seeds} and {max_seeds}")
    if min_seeds == max_seeds:
        return alpha
    rng = np.random.default_rng(seed)
    ns = np.arange(min_seeds, max_seeds + 1)
    smallest = np.empty(paths)
    for start in range(0, paths, 50_000):
        z = rng.standard_normal((min(50_000, paths - start), max_seeds))
        s1 = np.cumsum(z, axis=1)[:, ns - 1]
        s2 = np.cumsum(z * z, axis=1)[:, ns - 1]
        mean = s1 / ns
        var = np.maximum((s2 - ns * mean**2) / (ns - 1), 1e-300)
        t = mean / np.sqrt(var / ns)
        smallest[start : start + len(z)] = special.stdtr(ns - 1, -t).min(axis=1)
    rse = math.sqrt((1.0 - alpha) / (alpha * paths))
    return float(np.quantile(smallest, alpha * (1.0 - 3.0 * rse)))


@attrs.frozen(kw_only=True)
class SequentialDesign:
    """Adds seeds to a pair until a verdict is reached or ``max_seeds`` are spent, keeping
    each verdict's error rate at ``alpha`` however many times the pair is looked at.

    The rule: after each new seed (in seed order), from ``min_seeds`` on, run the paired tests
    (:func:`paired_test`) at the per-look level α′ = :meth:`level`; the first ``n`` at which
    one rejects decides the verdict, and the pair gets no more seeds.

    ``boundary = "pocock"`` (default): α′ is the same at every look and calibrated so that, for
    differences that are normal (the t test's own assumption) with the worst-case mean on the
    null hypothesis' boundary, *some* look rejects with probability ``alpha``
    (:func:`pocock_level`; for 3..10 seeds and alpha 0.05, α′ ≈ 0.013, against 0.00625 for
    Bonferroni). Each verdict's error region is a one-sided test, or the intersection of two
    (TOST), so each keeps its rate.
    ``boundary = "bonferroni"``: α′ = alpha / (max_seeds − min_seeds + 1), valid without the
    normal calibration's reliance on the joint law of the looks, and more conservative.

    Both spend α over every *possible* look n = min_seeds..max_seeds, so looking less often
    (adding several seeds at once) or at data-dependent times keeps the rates: the event "a
    look rejects" is inside "some n rejects". A fixed-seed run (no looks beyond its own seed
    count) is the special case ``min_seeds == max_seeds``, where α′ = alpha.
    """

    alpha: float = attrs.field(default=DEFAULT_ALPHA)
    margin: float = attrs.field(default=DEFAULT_MARGIN)
    min_seeds: int = attrs.field(default=MIN_SEEDS, validator=attrs.validators.ge(MIN_SEEDS))
    max_seeds: int = attrs.field(default=20)
    boundary: Literal["pocock", "bonferroni"] = attrs.field(
        default="pocock", validator=attrs.validators.in_(("pocock", "bonferroni"))
    )

    def __attrs_post_init__(self) -> None:
        _check_settings(self.margin, self.alpha)
        if self.max_seeds < self.min_seeds:
            raise ValueError(
                f"max_seeds ({self.max_seeds}) must be >= min_seeds ({self.min_seeds})"
            )

    def level(self) -> float:
        """The per-look one-sided level α′."""
        if self.boundary == "bonferroni":
            return self.alpha / (self.max_seeds - self.min_seeds + 1)
        return pocock_level(self.alpha, self.min_seeds, self.max_seeds)

    def describe(self) -> str:
        """One sentence a report can print."""
        how = (
            "Pocock boundary on the t statistic, calibrated by simulation"
            if self.boundary == "pocock"
            else "Bonferroni split over the possible looks"
        )
        return (
            f"sequential: seeds added one pair at a time from {self.min_seeds} to at most {self.max_seeds}; "
            f"each look tests at level {self.level():.4f} ({how}), so every verdict keeps its "
            f"error rate of {self.alpha:g} over all looks; equivalence margin ±{self.margin:g} points"
        )

    def decide(self, diffs: Sequence[float]) -> Decision:
        """The decision after ``diffs`` (clean − with check, points, in seed order)."""
        level = self.level()
        usable = list(diffs)[: self.max_seeds]
        test = paired_test(usable[: self.min_seeds], margin=self.margin, alpha=level)
        for n in range(self.min_seeds, len(usable) + 1):
            test = paired_test(usable[:n], margin=self.margin, alpha=level)
            if test.decided:
                note = f"decided at {n} seeds"
                if len(diffs) > n:
                    note += f" (later seeds, {len(diffs) - n}, not used: the rule stops at the first decision)"
                return Decision(status="decided", verdict=test.verdict, n=n, test=test, note=note)
        if len(usable) < self.min_seeds:
            return Decision(
                status="undecided",
                verdict="too few seeds",
                n=len(usable),
                test=test,
                note=f"needs {self.min_seeds} seeds",
            )
        if len(usable) >= self.max_seeds:
            return Decision(
                status="exhausted",
                verdict="inconclusive",
                n=len(usable),
                test=test,
                note=f"no verdict within the budget of {self.max_seeds} seeds",
            )
        return Decision(
            status="undecided",
            verdict="inconclusive",
            n=len(usable),
            test=test,
            note="more seeds needed",
        )


def decide_all(
    differences: Mapping[K, Sequence[float]], design: SequentialDesign = SequentialDesign()
) -> dict[K, Decision]:
    """:meth:`SequentialDesign.decide` for every pair."""
    return {key: design.decide(diffs) for key, diffs in differences.items()}


def next_seeds(
    differences: Mapping[K, Sequence[float]], design: SequentialDesign = SequentialDesign()
) -> set[K]:
    """The pairs that need another seed: those still "undecided" (no verdict, budget left).

    ``differences`` maps any pair key (e.g. ``(method, check, sparsity)``) to its paired
    differences clean − with check in points, in seed order. A pair with fewer than
    ``min_seeds`` differences is undecided, so a new pair gets seeds up to ``min_seeds``."""
    return {
        key
        for key, decision in decide_all(differences, design).items()
        if decision.status == "undecided"
    }


# ------------------------------------------------------------------------- check effects
@attrs.frozen(kw_only=True)
class Effect:
    """Paired effect of one check on one method at one sparsity: clean − with check, points.

    ``mean > 0`` means the check lowers accuracy. ``verdict``: see the module docstring;
    ``ci_low``/``ci_high`` the ``confidence`` = 1 − 2·level interval (None below
    :data:`MIN_SEEDS` seeds or with no seed variance). ``seeds_used`` is how many seeds the
    verdict took (all paired seeds in a fixed-seed report; the sequential rule's deciding ``n``
    with ``sequential``). For inconclusive results ``seeds_needed`` estimates how many seeds
    would decide it at the observed mean and SD (None when it cannot be estimated).
    """

    protocol: str
    model: str
    dataset: str
    method: str
    check: str
    sparsity: float
    n: int
    seeds: tuple[int, ...]
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    clean_mean: float | None
    perturbed_mean: float | None
    verdict: Verdict
    seeds_needed: int | None
    note: str
    margin: float
    alpha: float
    confidence: float
    p_lowers: float | None = None
    p_raises: float | None = None
    p_equivalent: float | None = None
    seeds_used: int = 0
    sequential: bool = False

    @property
    def no_variance(self) -> bool:
        return self.n >= MIN_SEEDS and self.sd == 0.0

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _note(test: PairedTest, needed: int | None) -> str:
    if test.n == 0:
        return "no clean run (check none) with the same seeds to pair with"
    if test.n < MIN_SEEDS:
        return f"{test.n} paired seed{'s' if test.n > 1 else ''}: tests and intervals need ≥ {MIN_SEEDS}"
    if test.no_variance:
        return f"no seed variance: all {test.n} seeds gave the same difference; the verdict follows its sign and size"
    if test.verdict == "fails" and test.p_lowers is not None and test.p_lowers < test.alpha:
        return f"a real but small drop, inside the ±{test.margin:g}-point margin"
    if test.verdict != "inconclusive":
        return ""
    if needed is not None:
        return f"~{needed} seeds would decide it at the observed SD"
    return f"more than {SEEDS_NEEDED_LIMIT} seeds would be needed"


def _effect(
    key: CellKey,
    clean: dict[int, float],
    perturbed: dict[int, float],
    margin: float,
    alpha: float,
    design: SequentialDesign | None,
) -> Effect:
    protocol, model, dataset, method, check, sparsity = key
    seeds = tuple(sorted(set(clean) & set(perturbed)))
    diffs = [clean[s] - perturbed[s] for s in seeds]
    note_extra = ""
    if design is None:
        test = paired_test(diffs, margin=margin, alpha=alpha)
        used = len(diffs)
    else:
        decision = design.decide(diffs)
        test, used = decision.test, decision.n
        seeds = seeds[:used]
        if decision.status == "exhausted":
            note_extra = decision.note
        elif decision.status == "undecided" and test.n >= MIN_SEEDS:
            note_extra = f"undecided after {test.n} seeds (budget {design.max_seeds})"
    needed = None
    if (
        test.verdict == "inconclusive"
        and test.mean is not None
        and test.sd is not None
        and test.n >= MIN_SEEDS
    ):
        needed = seeds_needed(test.mean, test.sd, test.n, margin=test.margin, alpha=test.alpha)
    note = "; ".join(part for part in (_note(test, needed), note_extra) if part)
    return Effect(
        protocol=protocol,
        model=model,
        dataset=dataset,
        method=method,
        check=check,
        sparsity=sparsity,
        n=test.n,
        seeds=seeds,
        mean=test.mean,
        sd=test.sd,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        clean_mean=float(np.mean([clean[s] for s in seeds])) if seeds else None,
        perturbed_mean=float(np.mean([perturbed[s] for s in seeds])) if seeds else None,
        verdict=test.verdict,
        seeds_needed=needed,
        note=note,
        margin=test.margin,
        alpha=test.alpha,
        confidence=1.0 - 2.0 * test.alpha,
        p_lowers=test.p_lowers,
        p_raises=test.p_raises,
        p_equivalent=test.p_equivalent,
        seeds_used=used,
        sequential=design is not None,
    )


def check_effects(
    rows: Sequence[ResultRow],
    *,
    margin: float = DEFAULT_MARGIN,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "final_accuracy",
    design: SequentialDesign | None = None,
) -> list[Effect]:
    """One :class:`Effect` per (protocol, model, dataset, method, check ≠ none, sparsity),
    pairing each perturbed run with the clean run of the same method, sparsity and seed.

    ``margin`` (points, default 1.0) is the equivalence margin; ``alpha`` (default 0.05) the
    error rate of each verdict. With ``design`` (results of ``--until-decided``) the verdicts
    come from the sequential rule instead, whose own ``margin`` and ``alpha`` apply. Sorted by
    protocol, model, dataset, method, check, sparsity.
    """
    _check_settings(margin, alpha)
    cells = collect(rows, metric)
    out: list[Effect] = []
    for key in sorted(cells):
        protocol, model, dataset, method, check, sparsity = key
        if check == CLEAN_CHECK:
            continue
        clean = cells.get((protocol, model, dataset, method, CLEAN_CHECK, sparsity), {})
        out.append(_effect(key, clean, cells[key], margin, alpha, design))
    return out


def paired_differences(
    rows: Sequence[ResultRow], metric: str = "final_accuracy"
) -> dict[CellKey, list[float]]:
    """``(protocol, model, dataset, method, check, sparsity) -> [clean − with check per seed]``
    in seed order, for every check ≠ none: the input of :func:`next_seeds`."""
    cells = collect(rows, metric)
    out: dict[CellKey, list[float]] = {}
    for key in sorted(cells):
        protocol, model, dataset, method, check, sparsity = key
        if check == CLEAN_CHECK:
            continue
        clean = cells.get((protocol, model, dataset, method, CLEAN_CHECK, sparsity), {})
        out[key] = [clean[s] - cells[key][s] for s in sorted(set(clean) & set(cells[key]))]
    return out


# ------------------------------------------------------------- verdicts across sparsities
COMBINATION_RULE = (
    "Across sparsities: a (method, check) reads one verdict when every sparsity reached it; "
    "that joint claim (e.g. 'passes at every sparsity') keeps the per-sparsity error rate, "
    "since each sparsity had to reject on its own (an intersection-union test). Otherwise it "
    "reads 'mixed' with each sparsity's verdict, and each of those holds at its own sparsity "
    "only; a claim about 'some sparsity' would need a multiplicity correction."
)


@attrs.frozen(kw_only=True)
class VerdictSummary:
    """All sparsities of one (method, check): the shared verdict, or "mixed", the counts and
    each sparsity's verdict (see :data:`COMBINATION_RULE`)."""

    protocol: str
    model: str
    dataset: str
    method: str
    check: str
    verdict: str  # one of VERDICTS, or "mixed"
    counts: dict[str, int]
    sparsities: tuple[float, ...]
    by_sparsity: tuple[tuple[float, str], ...] = ()
    seeds_used: tuple[int, ...] = ()  # per sparsity, in the order of ``sparsities``

    @property
    def decided(self) -> bool:
        """Every sparsity has a verdict (passes / fails / raises accuracy)."""
        return bool(self.by_sparsity) and all(v in DECIDED for _, v in self.by_sparsity)

    def text(self) -> str:
        """E.g. "passes" or "mixed: passes at 90%, inconclusive at 98%"."""
        if self.verdict != "mixed":
            return self.verdict
        return "mixed: " + ", ".join(f"{v} at {s * 100:.4g}%" for s, v in self.by_sparsity)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def verdict_matrix(effects: Sequence[Effect]) -> list[VerdictSummary]:
    """Collapse effects over sparsities: one entry per (protocol, model, dataset, method, check).

    The verdict is the one every sparsity shares, or "mixed" when they differ (the counts and
    ``by_sparsity`` say how)."""
    groups: dict[tuple[str, str, str, str, str], list[Effect]] = defaultdict(list)
    for e in effects:
        groups[(e.protocol, e.model, e.dataset, e.method, e.check)].append(e)
    out = []
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda e: e.sparsity)
        counts = {v: sum(e.verdict == v for e in group) for v in VERDICTS}
        distinct = {e.verdict for e in group}
        out.append(
            VerdictSummary(
                protocol=key[0],
                model=key[1],
                dataset=key[2],
                method=key[3],
                check=key[4],
                verdict=distinct.pop() if len(distinct) == 1 else "mixed",
                counts={k: v for k, v in counts.items() if v},
                sparsities=tuple(e.sparsity for e in group),
                by_sparsity=tuple((e.sparsity, e.verdict) for e in group),
                seeds_used=tuple(e.seeds_used for e in group),
            )
        )
    return out


def decided_fraction(verdicts: Sequence[VerdictSummary]) -> float | None:
    """The share of (method, check) entries decided at every sparsity (None when empty)."""
    return sum(v.decided for v in verdicts) / len(verdicts) if verdicts else None


# ------------------------------------------------------------------------------ ranking
@attrs.frozen(kw_only=True)
class Delta:
    """Mean difference (method − reference) in points with its CI; paired by seed when the two
    share at least two seeds, else Welch's unpaired interval. No CI from fewer than
    :data:`MIN_SEEDS` seeds (paired, or on either side unpaired), nor when there is no seed
    variance (``note`` says which)."""

    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int  # paired seeds, or the smaller of the two seed counts when unpaired
    paired: bool
    note: str = ""


def difference(
    values: dict[int, float], reference: dict[int, float], confidence: float = DEFAULT_CONFIDENCE
) -> Delta | None:
    """``values − reference`` per seed when paired, else difference of means (Welch)."""
    if not values or not reference:
        return None
    common = sorted(set(values) & set(reference))
    if len(common) >= 2:
        s = summarize([values[k] - reference[k] for k in common], confidence)
        assert s.mean is not None
        note = "too few seeds" if s.n < MIN_SEEDS else ("no seed variance" if s.no_variance else "")
        return Delta(mean=s.mean, ci_low=s.ci_low, ci_high=s.ci_high, n=s.n, paired=True, note=note)
    a = np.asarray(list(values.values()), dtype=float)
    b = np.asarray(list(reference.values()), dtype=float)
    mean = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    if n < MIN_SEEDS:
        return Delta(mean=mean, ci_low=None, ci_high=None, n=n, paired=False, note="too few seeds")
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if se <= _ZERO_SD * max(1.0, abs(mean)):
        return Delta(
            mean=mean, ci_low=None, ci_high=None, n=n, paired=False, note="no seed variance"
        )
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return Delta(
        mean=mean, ci_low=float(welch.low), ci_high=float(welch.high), n=n, paired=False
    )


ACCURACY_BOUNDS = (0.0, ACCURACY_POINTS)


@attrs.frozen(kw_only=True)
class Rank:
    """One method in one leaderboard: a sparsity's (``sparsity`` set) or overall (None).

    Per sparsity: ``mean``/``sd``/``ci_*`` of the clean final accuracy over seeds (points),
    ``rank`` (1 = best, ties share the average rank) and its bootstrap interval. The accuracy
    interval needs :data:`MIN_SEEDS` seeds and is clipped to [0, 100] (``ci_clipped``). Overall:
    ``rank`` is the mean rank over the sparsities the method ran at, ``mean`` the mean of its
    per-sparsity means and ``n`` the number of sparsities. The dense run is the ``reference``
    row of every leaderboard and is not ranked (``rank`` None).
    """

    protocol: str
    model: str
    dataset: str
    sparsity: float | None
    method: str
    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    rank: float | None
    rank_low: float | None
    rank_high: float | None
    vs_random_ticket: Delta | None
    reference: bool = False
    ci_clipped: bool = False  # the accuracy interval was cut at 0 or 100 points

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _average_ranks(means: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 = highest, ties get the average of the tied ranks."""
    return np.asarray(stats.rankdata(-means, method="average", axis=-1), dtype=float)


def ranking(
    rows: Sequence[ResultRow],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    metric: str = "final_accuracy",
    reference_method: str = REFERENCE_METHOD,
) -> list[Rank]:
    """Leaderboards of the clean runs (check "none") per (protocol, model, dataset, sparsity),
    then one overall per (protocol, model, dataset) by mean rank across sparsities.

    Rank intervals: ``n_boot`` bootstrap draws resampling each method's seeds with replacement
    (generator seeded by ``seed``), 2.5th and 97.5th percentiles of the rank — of the mean rank
    across sparsities for the overall board. ``vs_random_ticket`` is each method's difference to
    ``reference_method`` (a suite's ``reference_method``; the random ticket by default) at the
    same sparsity (see :class:`Delta`). Order: group, sparsity
    ascending, best rank first, dense last; the overall boards after each group's sparsities.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    _check_confidence(confidence)
    cells = collect(rows, metric)
    clean: dict[GroupKey, dict[float, dict[str, dict[int, float]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    dense: dict[GroupKey, dict[int, float]] = {}
    for (protocol, model, dataset, method, check, sparsity), values in cells.items():
        if check != CLEAN_CHECK:
            continue
        group = (protocol, model, dataset)
        if method == DENSE_METHOD:
            dense[group] = values
        else:
            clean[group][sparsity][method] = values
    out: list[Rank] = []
    for g_index, group in enumerate(sorted(set(clean) | set(dense))):
        rng = np.random.default_rng([seed, g_index])
        protocol, model, dataset = group
        per_sparsity = clean.get(group, {})
        point_ranks: dict[str, list[float]] = defaultdict(list)
        boot_ranks: dict[str, list[np.ndarray]] = defaultdict(list)
        means_of: dict[str, list[float]] = defaultdict(list)
        for sparsity in sorted(per_sparsity) or [0.0]:
            methods = per_sparsity.get(sparsity, {})
            names = sorted(methods)
            board: list[Rank] = []
            if names:
                point = _average_ranks(
                    np.array([np.mean(list(methods[m].values())) for m in names])
                )
                draws = np.stack(
                    [
                        np.asarray(list(methods[m].values()))[
                            rng.integers(0, len(methods[m]), size=(n_boot, len(methods[m])))
                        ].mean(axis=1)
                        for m in names
                    ],
                    axis=1,
                )
                boot = _average_ranks(draws)  # (n_boot, methods)
                reference = methods.get(reference_method)
                for i, m in enumerate(names):
                    s = summarize(list(methods[m].values()), confidence, ACCURACY_BOUNDS)
                    point_ranks[m].append(float(point[i]))
                    boot_ranks[m].append(boot[:, i])
                    assert s.mean is not None
                    means_of[m].append(s.mean)
                    board.append(
                        Rank(
                            protocol=protocol,
                            model=model,
                            dataset=dataset,
                            sparsity=sparsity,
                            method=m,
                            n=s.n,
                            mean=s.mean,
                            sd=s.sd,
                            ci_low=s.ci_low,
                            ci_high=s.ci_high,
                            ci_clipped=s.ci_clipped,
                            rank=float(point[i]),
                            rank_low=float(np.percentile(boot[:, i], 2.5)),
                            rank_high=float(np.percentile(boot[:, i], 97.5)),
                            vs_random_ticket=None
                            if m == reference_method or reference is None
                            else difference(methods[m], reference, confidence),
                        )
                    )
                board.sort(key=lambda r: (r.rank, r.method))
            if group in dense:
                s = summarize(list(dense[group].values()), confidence, ACCURACY_BOUNDS)
                reference = methods.get(reference_method)
                board.append(
                    Rank(
                        protocol=protocol,
                        model=model,
                        dataset=dataset,
                        sparsity=sparsity,
                        method=DENSE_METHOD,
                        n=s.n,
                        mean=s.mean,
                        sd=s.sd,
                        ci_low=s.ci_low,
                        ci_high=s.ci_high,
                        ci_clipped=s.ci_clipped,
                        rank=None,
                        rank_low=None,
                        rank_high=None,
                        vs_random_ticket=None
                        if reference is None
                        else difference(dense[group], reference, confidence),
                        reference=True,
                    )
                )
            out.extend(board)
        overall: list[Rank] = []
        for m, ranks in point_ranks.items():
            mean_boot = np.mean(np.stack(boot_ranks[m]), axis=0)
            overall.append(
                Rank(
                    protocol=protocol,
                    model=model,
                    dataset=dataset,
                    sparsity=None,
                    method=m,
                    n=len(ranks),
                    mean=float(np.mean(means_of[m])),
                    sd=None,
                    ci_low=None,
                    ci_high=None,
                    rank=float(np.mean(ranks)),
                    rank_low=float(np.percentile(mean_boot, 2.5)),
                    rank_high=float(np.percentile(mean_boot, 97.5)),
                    vs_random_ticket=None,
                )
            )
        overall.sort(key=lambda r: (r.rank, r.method))
        out.extend(overall)
    return out


__all__ = [
    "ACCURACY_POINTS",
    "COMBINATION_RULE",
    "DECIDED",
    "DEFAULT_ALPHA",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_MARGIN",
    "DEFAULT_TOLERANCE",
    "MIN_SEEDS",
    "VERDICTS",
    "Decision",
    "Delta",
    "Effect",
    "Granularity",
    "PairedTest",
    "Rank",
    "SequentialDesign",
    "Summary",
    "VerdictSummary",
    "accuracy_granularity",
    "check_effects",
    "collect",
    "decide_all",
    "decided_fraction",
    "difference",
    "next_seeds",
    "paired_differences",
    "paired_test",
    "pocock_level",
    "ranking",
    "seeds_needed",
    "summarize",
    "t_quantile",
    "verdict_matrix",
]
