"""Statistics over benchmark results: paired check effects with verdicts, and rankings.

Pure functions on ``list[ResultRow]``. Only rows with status ``"done"`` and a value for the
metric count. Results are never pooled across protocol fingerprints, models or datasets: every
function groups by ``(protocol, model, dataset)`` first.

Units: a :class:`~prunekit.bench.records.ResultRow` holds accuracies as fractions in [0, 1]
(what trainers report); everything returned here is in accuracy *points* (percent), so an
effect of 1.0 is one percentage point.

Defaults (documented in ``docs/reproducing.md`` too):

- ``tolerance = 1.0`` point: effects within ±1 point count as "no change". A check is
  *passed* when the confidence interval of (clean − perturbed) lies entirely above +1 point,
  *failed* when it lies entirely within [−1, +1], and *inconclusive* otherwise.
- ``confidence = 0.95``: two-sided Student-t intervals over seeds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import attrs
import numpy as np

from prunekit.bench.records import ResultRow

ACCURACY_POINTS = 100.0  # fraction -> percentage points
DEFAULT_TOLERANCE = 1.0
DEFAULT_CONFIDENCE = 0.95
CLEAN_CHECK = "none"
DENSE_METHOD = "dense"
REFERENCE_METHOD = "random_ticket"
SEEDS_NEEDED_LIMIT = 100_000  # beyond this we say "not within reach" (None)

Verdict = Literal["passes", "fails", "inconclusive"]
GroupKey = tuple[str, str, str]  # (protocol, model, dataset)


# ------------------------------------------------------------------------- t quantiles
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile_fallback(p: float, df: float) -> float:
    """Student-t quantile without scipy: bisection on the exact CDF (incomplete beta).

    Accurate to ~1e-10 for df >= 1 (e.g. 12.706 for df=1, 4.303 for df=2, 2.776 for df=4
    at p=0.975).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile_fallback(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile: scipy's when scipy is installed (it is not a dependency), else
    :func:`t_quantile_fallback`, which computes the same number."""
    try:
        from scipy.stats import t as student_t
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn in practice
        return t_quantile_fallback(p, df)
    return float(student_t.ppf(p, df))


# ------------------------------------------------------------------------- small helpers
def sparsity_key(sparsity: float) -> float:
    """Sparsities are grouped after rounding to 6 decimals (0.9 and 0.90000001 are one)."""
    return round(float(sparsity), 6)


@attrs.frozen(kw_only=True)
class Summary:
    """Mean, sample SD and two-sided t confidence interval of a handful of numbers."""

    n: int
    mean: float | None
    sd: float | None  # None when n < 2
    ci_low: float | None  # None when n < 2
    ci_high: float | None


def summarize(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Summary:
    """Mean ± t_{(1+c)/2, n-1} · SD/√n. With one value the mean only; with none, nothing."""
    n = len(values)
    if n == 0:
        return Summary(n=0, mean=None, sd=None, ci_low=None, ci_high=None)
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    if n < 2:
        return Summary(n=1, mean=mean, sd=None, ci_low=None, ci_high=None)
    sd = float(arr.std(ddof=1))
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * sd / math.sqrt(n)
    return Summary(n=n, mean=mean, sd=sd, ci_low=mean - half, ci_high=mean + half)


def _check_settings(tolerance: float, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if tolerance < 0.0:
        raise ValueError(f"tolerance must be >= 0 points, got {tolerance}")


CellKey = tuple[str, str, str, str, str, float]  # protocol, model, dataset, method, check, sparsity


def collect(rows: Iterable[ResultRow], metric: str = "final_accuracy") -> dict[CellKey, dict[int, float]]:
    """``(protocol, model, dataset, method, check, sparsity) -> {seed: metric in points}``.

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
        cell = (row.protocol, row.model, row.dataset, row.method, row.check, sparsity_key(row.sparsity))
        values[cell][int(row.seed)].append(float(value) * ACCURACY_POINTS)
    return {
        cell: {seed: float(np.mean(v)) for seed, v in sorted(per_seed.items())}
        for cell, per_seed in values.items()
    }


# ------------------------------------------------------------------------- check effects
@attrs.frozen(kw_only=True)
class Effect:
    """Paired effect of one check on one method at one sparsity: clean − perturbed, in points.

    ``mean > 0`` means the check lowers accuracy. ``verdict`` is "passes" (the CI lies above
    +tolerance: the method uses what the check destroys), "fails" (the CI lies within
    ±tolerance: it does not) or "inconclusive". For inconclusive results ``seeds_needed`` is the
    smallest number of seeds whose CI, at the observed mean and SD, would decide it (None when
    it cannot be estimated; ``note`` says why).
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
    tolerance: float
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _decides(mean: float, half: float, tolerance: float) -> bool:
    return mean - half > tolerance or (mean - half >= -tolerance and mean + half <= tolerance)


def verdict_of(ci_low: float, ci_high: float, tolerance: float) -> Verdict:
    """passes: CI above +tolerance; fails: CI within [−tolerance, +tolerance]; else inconclusive."""
    if ci_low > tolerance:
        return "passes"
    if ci_low >= -tolerance and ci_high <= tolerance:
        return "fails"
    return "inconclusive"


def seeds_needed(mean: float, sd: float, n: int, *, tolerance: float, confidence: float) -> int | None:
    """Smallest number of seeds (> n) whose CI half-width t·sd/√m would decide the verdict if
    the mean and SD stayed as observed; None if no number of seeds would (mean at or beyond
    −tolerance, or exactly on +tolerance) or more than ``SEEDS_NEEDED_LIMIT`` would be needed."""
    if sd <= 0.0 or not (mean > tolerance or -tolerance < mean < tolerance):
        return None
    q = (1.0 + confidence) / 2.0

    def decided(m: int) -> bool:
        return _decides(mean, t_quantile(q, m - 1) * sd / math.sqrt(m), tolerance)

    lo = max(n, 1)  # undecided (or below the minimum of 2)
    hi = max(n + 1, 2)
    while not decided(hi):
        lo, hi = hi, hi * 2
        if hi > SEEDS_NEEDED_LIMIT:
            return None
    while hi - lo > 1:  # decided(m) is monotone in m: the half-width shrinks with m
        mid = (lo + hi) // 2
        if decided(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _effect(
    key: CellKey,
    clean: dict[int, float],
    perturbed: dict[int, float],
    tolerance: float,
    confidence: float,
) -> Effect:
    protocol, model, dataset, method, check, sparsity = key
    seeds = tuple(sorted(set(clean) & set(perturbed)))
    diffs = [clean[s] - perturbed[s] for s in seeds]
    stats = summarize(diffs, confidence)
    clean_mean = float(np.mean([clean[s] for s in seeds])) if seeds else None
    perturbed_mean = float(np.mean([perturbed[s] for s in seeds])) if seeds else None
    needed: int | None = None
    if stats.n == 0:
        verdict: Verdict = "inconclusive"
        note = "no clean run (check none) with the same seeds to pair with"
    elif stats.n == 1:
        verdict, note = "inconclusive", "need ≥ 2 seeds"
    else:
        assert stats.mean is not None and stats.sd is not None
        assert stats.ci_low is not None and stats.ci_high is not None
        verdict = verdict_of(stats.ci_low, stats.ci_high, tolerance)
        note = ""
        if verdict == "inconclusive":
            needed = seeds_needed(stats.mean, stats.sd, stats.n, tolerance=tolerance, confidence=confidence)
            if needed is not None:
                note = f"~{needed} seeds would decide it at the observed SD"
            elif stats.sd == 0.0:
                note = "every seed gives the same effect, on the tolerance boundary"
            elif stats.mean < -tolerance:
                note = "the check raises accuracy beyond the tolerance; more seeds will not decide it"
            elif stats.mean == -tolerance or stats.mean == tolerance:
                note = "the mean effect sits on the tolerance boundary"
            else:
                note = f"more than {SEEDS_NEEDED_LIMIT} seeds would be needed"
    return Effect(
        protocol=protocol,
        model=model,
        dataset=dataset,
        method=method,
        check=check,
        sparsity=sparsity,
        n=stats.n,
        seeds=seeds,
        mean=stats.mean,
        sd=stats.sd,
        ci_low=stats.ci_low,
        ci_high=stats.ci_high,
        clean_mean=clean_mean,
        perturbed_mean=perturbed_mean,
        verdict=verdict,
        seeds_needed=needed,
        note=note,
        tolerance=tolerance,
        confidence=confidence,
    )


def check_effects(
    rows: Sequence[ResultRow],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    metric: str = "final_accuracy",
) -> list[Effect]:
    """One :class:`Effect` per (protocol, model, dataset, method, check ≠ none, sparsity),
    pairing each perturbed run with the clean run of the same method, sparsity and seed.

    ``tolerance`` (points, default 1.0) is the largest effect that counts as "no change";
    ``confidence`` (default 0.95) is the two-sided level of the t interval over seeds.
    Sorted by protocol, model, dataset, method, check, sparsity.
    """
    _check_settings(tolerance, confidence)
    cells = collect(rows, metric)
    out: list[Effect] = []
    for key in sorted(cells):
        protocol, model, dataset, method, check, sparsity = key
        if check == CLEAN_CHECK:
            continue
        clean = cells.get((protocol, model, dataset, method, CLEAN_CHECK, sparsity), {})
        out.append(_effect(key, clean, cells[key], tolerance, confidence))
    return out


@attrs.frozen(kw_only=True)
class VerdictSummary:
    """All sparsities of one (method, check): the shared verdict, or "mixed", and the counts."""

    protocol: str
    model: str
    dataset: str
    method: str
    check: str
    verdict: str  # "passes" | "fails" | "inconclusive" | "mixed"
    counts: dict[str, int]
    sparsities: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def verdict_matrix(effects: Sequence[Effect]) -> list[VerdictSummary]:
    """Collapse effects over sparsities: one entry per (protocol, model, dataset, method, check).

    The verdict is the one every sparsity shares, or "mixed" when they differ (the counts say
    how: e.g. 2 passes and 1 inconclusive)."""
    groups: dict[tuple[str, str, str, str, str], list[Effect]] = defaultdict(list)
    for e in effects:
        groups[(e.protocol, e.model, e.dataset, e.method, e.check)].append(e)
    out = []
    for key in sorted(groups):
        group = groups[key]
        counts = {v: sum(e.verdict == v for e in group) for v in ("passes", "fails", "inconclusive")}
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
                sparsities=tuple(sorted(e.sparsity for e in group)),
            )
        )
    return out


# ------------------------------------------------------------------------------ ranking
@attrs.frozen(kw_only=True)
class Delta:
    """Mean difference (method − reference) in points with its CI; paired by seed when the two
    share at least two seeds, else Welch's unpaired interval (no CI with fewer than 2 each)."""

    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int  # paired seeds, or the smaller of the two seed counts when unpaired
    paired: bool


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
        return Delta(mean=s.mean, ci_low=s.ci_low, ci_high=s.ci_high, n=s.n, paired=True)
    a = np.asarray(list(values.values()), dtype=float)
    b = np.asarray(list(reference.values()), dtype=float)
    mean = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Delta(mean=mean, ci_low=None, ci_high=None, n=min(len(a), len(b)), paired=False)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Delta(mean=mean, ci_low=mean, ci_high=mean, n=min(len(a), len(b)), paired=False)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile((1.0 + confidence) / 2.0, df) * se
    return Delta(mean=mean, ci_low=mean - half, ci_high=mean + half, n=min(len(a), len(b)), paired=False)


@attrs.frozen(kw_only=True)
class Rank:
    """One method in one leaderboard: a sparsity's (``sparsity`` set) or overall (None).

    Per sparsity: ``mean``/``sd``/``ci_*`` of the clean final accuracy over seeds (points),
    ``rank`` (1 = best, ties share the average rank) and its bootstrap interval. Overall:
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

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _average_ranks(means: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 = highest, ties get the average of the tied ranks."""
    greater = (means[..., None, :] > means[..., :, None]).sum(-1)
    equal = (means[..., None, :] == means[..., :, None]).sum(-1) - 1
    return 1.0 + greater + 0.5 * equal


def ranking(
    rows: Sequence[ResultRow],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    metric: str = "final_accuracy",
) -> list[Rank]:
    """Leaderboards of the clean runs (check "none") per (protocol, model, dataset, sparsity),
    then one overall per (protocol, model, dataset) by mean rank across sparsities.

    Rank intervals: ``n_boot`` bootstrap draws resampling each method's seeds with replacement
    (generator seeded by ``seed``), 2.5th and 97.5th percentiles of the rank — of the mean rank
    across sparsities for the overall board. ``vs_random_ticket`` is each method's difference to
    ``random_ticket`` at the same sparsity (see :class:`Delta`). Order: group, sparsity
    ascending, best rank first, dense last; the overall boards after each group's sparsities.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    cells = collect(rows, metric)
    clean: dict[GroupKey, dict[float, dict[str, dict[int, float]]]] = defaultdict(lambda: defaultdict(dict))
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
                point = _average_ranks(np.array([np.mean(list(methods[m].values())) for m in names]))
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
                reference = methods.get(REFERENCE_METHOD)
                for i, m in enumerate(names):
                    s = summarize(list(methods[m].values()), confidence)
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
                            rank=float(point[i]),
                            rank_low=float(np.percentile(boot[:, i], 2.5)),
                            rank_high=float(np.percentile(boot[:, i], 97.5)),
                            vs_random_ticket=None
                            if m == REFERENCE_METHOD or reference is None
                            else difference(methods[m], reference, confidence),
                        )
                    )
                board.sort(key=lambda r: (r.rank, r.method))
            if group in dense:
                s = summarize(list(dense[group].values()), confidence)
                reference = methods.get(REFERENCE_METHOD)
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
    "DEFAULT_CONFIDENCE",
    "DEFAULT_TOLERANCE",
    "Delta",
    "Effect",
    "Rank",
    "Summary",
    "VerdictSummary",
    "check_effects",
    "collect",
    "difference",
    "ranking",
    "seeds_needed",
    "summarize",
    "t_quantile",
    "t_quantile_fallback",
    "verdict_matrix",
    "verdict_of",
]
