"""Benchmark statistics: t quantiles, paired check effects and verdicts, rankings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import (
    check_effects,
    difference,
    ranking,
    seeds_needed,
    summarize,
    t_quantile,
    t_quantile_fallback,
    verdict_matrix,
)

# two-sided 95 % Student-t critical values from a printed table (t_{0.975, df})
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042}


def row(
    method: str,
    check: str,
    sparsity: float,
    seed: int,
    accuracy: float | None,
    *,
    protocol: str = "p1",
    model: str = "net",
    dataset: str = "data",
    status: str = "done",
) -> ResultRow:
    """A result row; accuracy is a fraction, as trainers report it."""
    return ResultRow(
        key=f"{protocol}/{model}/{dataset}/{method}/{check}/{sparsity}/{seed}",
        suite="test",
        model=model,
        dataset=dataset,
        method=method,
        check=check,
        sparsity=sparsity,
        seed=seed,
        protocol=protocol,
        status=status,  # type: ignore[arg-type]
        final_accuracy=accuracy,
        best_accuracy=accuracy,
    )


def paired(
    method: str,
    check: str,
    clean: Sequence[float],
    perturbed: Sequence[float],
    sparsity: float = 0.9,
    **kw: str,
) -> list[ResultRow]:
    """Clean and perturbed rows for seeds 0..n-1 (fractions)."""
    rows = [row(method, "none", sparsity, s, a, **kw) for s, a in enumerate(clean)]
    rows += [row(method, check, sparsity, s, a, **kw) for s, a in enumerate(perturbed)]
    return rows


def test_t_quantile_matches_printed_table() -> None:
    """The scipy-free quantile and t_quantile agree with a printed t table to 3 decimals."""
    for df, expected in T_TABLE.items():
        assert t_quantile_fallback(0.975, df) == pytest.approx(expected, abs=5e-4)
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
        assert t_quantile_fallback(0.975, df) == pytest.approx(t_quantile(0.975, df), rel=1e-8)
    assert t_quantile_fallback(0.025, 3) == pytest.approx(-T_TABLE[3], abs=5e-4)
    assert t_quantile_fallback(0.975, 1e6) == pytest.approx(1.95996, abs=1e-4)  # normal limit


def test_ci_for_three_seeds_uses_t_4303() -> None:
    """n = 3: CI = mean ± 4.303 · SD/√3, computed here by hand."""
    rows = paired("snip", "random_labels", [0.90, 0.91, 0.92], [0.85, 0.85, 0.85])
    (effect,) = check_effects(rows)
    diffs = [5.0, 6.0, 7.0]  # points
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert effect.n == 3 and effect.seeds == (0, 1, 2)
    assert effect.mean == pytest.approx(mean)
    assert effect.sd == pytest.approx(sd)
    assert effect.ci_low == pytest.approx(mean - half, abs=1e-3)
    assert effect.ci_high == pytest.approx(mean + half, abs=1e-3)
    assert effect.clean_mean == pytest.approx(91.0) and effect.perturbed_mean == pytest.approx(85.0)


def test_clear_drop_across_five_seeds_passes() -> None:
    """A 10-point drop with ±0.3 point noise over 5 seeds: the method passes the check."""
    clean = [0.900, 0.903, 0.897, 0.901, 0.899]
    perturbed = [0.800, 0.798, 0.803, 0.799, 0.801]
    (effect,) = check_effects(paired("lrr", "half_dataset", clean, perturbed))
    assert effect.verdict == "passes"
    assert effect.mean == pytest.approx(9.98, abs=0.01)
    assert effect.ci_low is not None and effect.ci_low > 1.0
    assert effect.seeds_needed is None


def test_equal_within_noise_fails() -> None:
    """Clean and perturbed within ±0.2 points over 5 seeds: the method fails the check."""
    clean = [0.900, 0.903, 0.897, 0.901, 0.899]
    perturbed = [0.901, 0.901, 0.898, 0.903, 0.898]
    (effect,) = check_effects(paired("snip", "layerwise_rearrange", clean, perturbed))
    assert effect.verdict == "fails"
    assert effect.ci_low is not None and effect.ci_high is not None
    assert -1.0 <= effect.ci_low and effect.ci_high <= 1.0


def test_two_noisy_seeds_inconclusive_with_seeds_needed() -> None:
    """Effects of 2 and 4 points: t(1) = 12.706 makes the CI huge; at mean 3 and SD √2 the
    CI clears +1 point first at 5 seeds (t(4)·√2/√5 = 1.756 < 2; t(3)·√2/2 = 2.250 > 2)."""
    (effect,) = check_effects(paired("grasp", "random_labels", [0.90, 0.91], [0.88, 0.87]))
    assert effect.verdict == "inconclusive"
    assert effect.mean == pytest.approx(3.0)
    assert effect.ci_low == pytest.approx(3.0 - T_TABLE[1], abs=1e-3)
    assert effect.seeds_needed == 5
    assert "5 seeds" in effect.note
    assert T_TABLE[4] * math.sqrt(2) / math.sqrt(5) < 2.0 < T_TABLE[3] * math.sqrt(2) / 2


def test_one_seed_is_inconclusive() -> None:
    """One seed: no interval, inconclusive, and the note asks for at least two seeds."""
    (effect,) = check_effects(paired("snip", "random_pixels", [0.90], [0.70]))
    assert effect.verdict == "inconclusive"
    assert effect.n == 1 and effect.mean == pytest.approx(20.0)
    assert effect.ci_low is None and effect.seeds_needed is None
    assert effect.note == "need ≥ 2 seeds"


def test_unpaired_seeds_are_not_compared() -> None:
    """Perturbed seeds without a clean run of the same seed give n = 0, inconclusive."""
    rows = [row("snip", "none", 0.9, 0, 0.9), row("snip", "reinit", 0.9, 1, 0.8)]
    (effect,) = check_effects(rows)
    assert effect.n == 0 and effect.verdict == "inconclusive" and effect.mean is None
    assert "no clean run" in effect.note


def test_only_done_rows_count() -> None:
    """Failed, running and not-applicable rows never enter a statistic."""
    rows = paired("snip", "reinit", [0.90, 0.91, 0.92], [0.90, 0.91, 0.92])
    rows.append(row("snip", "reinit", 0.9, 3, 0.10, status="failed"))
    rows.append(row("snip", "none", 0.9, 3, 0.95, status="running"))
    (effect,) = check_effects(rows)
    assert effect.n == 3 and effect.mean == pytest.approx(0.0, abs=1e-9)


def test_protocols_never_mixed() -> None:
    """Two protocol fingerprints give two effects and two leaderboards, each from its own
    rows: one passes, the other fails, which pooling would have blurred."""
    rows = paired("snip", "random_labels", [0.9, 0.9, 0.9], [0.8, 0.8, 0.8], protocol="A")
    rows += paired("snip", "random_labels", [0.9, 0.9, 0.9], [0.9, 0.9, 0.9], protocol="B")
    effects = {e.protocol: e for e in check_effects(rows)}
    assert set(effects) == {"A", "B"}
    assert effects["A"].verdict == "passes" and effects["B"].verdict == "fails"
    boards = {(r.protocol, r.sparsity) for r in ranking(rows, n_boot=50)}
    assert boards == {("A", 0.9), ("B", 0.9), ("A", None), ("B", None)}


def test_models_and_datasets_never_mixed() -> None:
    """The same method on two datasets gives one effect per dataset."""
    rows = paired("snip", "reinit", [0.9, 0.9], [0.9, 0.9], dataset="cifar10")
    rows += paired("snip", "reinit", [0.9, 0.9], [0.9, 0.9], dataset="cifar100")
    assert sorted(e.dataset for e in check_effects(rows)) == ["cifar10", "cifar100"]


def test_seeds_needed_monotone_search() -> None:
    """seeds_needed matches a brute-force search and is None where no count can decide."""

    def brute(mean: float, sd: float) -> int:
        m = 3
        while True:
            half = t_quantile(0.975, m - 1) * sd / math.sqrt(m)
            if mean - half > 1.0 or (mean - half >= -1.0 and mean + half <= 1.0):
                return m
            m += 1

    for mean, sd in ((3.0, 2.0), (0.1, 1.0), (1.5, 1.0), (-0.5, 0.7)):
        assert seeds_needed(mean, sd, 2, tolerance=1.0, confidence=0.95) == brute(mean, sd)
    assert seeds_needed(-2.0, 1.0, 2, tolerance=1.0, confidence=0.95) is None  # accuracy rises
    assert seeds_needed(1.0, 1.0, 2, tolerance=1.0, confidence=0.95) is None  # on the boundary
    assert seeds_needed(3.0, 0.0, 2, tolerance=1.0, confidence=0.95) is None


def test_settings_are_checked() -> None:
    """A confidence outside (0, 1) or a negative tolerance is refused."""
    with pytest.raises(ValueError, match="confidence"):
        check_effects([], confidence=1.0)
    with pytest.raises(ValueError, match="tolerance"):
        check_effects([], tolerance=-1.0)


def test_verdict_matrix_collapses_sparsities() -> None:
    """One entry per (method, check): the shared verdict, or "mixed" with the counts."""
    rows = paired("lrr", "half_dataset", [0.9] * 3, [0.8] * 3, sparsity=0.9)
    rows += paired("lrr", "half_dataset", [0.9, 0.91, 0.92], [0.9, 0.91, 0.92], sparsity=0.95)
    rows += paired("snip", "reinit", [0.9, 0.91], [0.9, 0.91], sparsity=0.9)
    rows += paired("snip", "reinit", [0.9, 0.91], [0.9, 0.91], sparsity=0.95)
    matrix = {(v.method, v.check): v for v in verdict_matrix(check_effects(rows))}
    assert matrix[("lrr", "half_dataset")].verdict == "mixed"
    assert matrix[("lrr", "half_dataset")].counts == {"passes": 1, "fails": 1}
    assert matrix[("snip", "reinit")].verdict == "fails"
    assert matrix[("snip", "reinit")].sparsities == (0.9, 0.95)


def _clean(method: str, accuracies: Sequence[float], sparsity: float = 0.9, **kw: str) -> list[ResultRow]:
    return [row(method, "none", sparsity, s, a, **kw) for s, a in enumerate(accuracies)]


def test_ranking_order_and_bootstrap_interval() -> None:
    """Clearly separated methods rank 1, 2, 3 with tight intervals; overlapping ones get an
    interval spanning both ranks; every interval contains its point rank."""
    rows = _clean("a", [0.930, 0.931, 0.929, 0.932, 0.928])
    rows += _clean("b", [0.910, 0.911, 0.909, 0.912, 0.908])
    rows += _clean("c", [0.890, 0.880, 0.900, 0.870, 0.910])
    rows += _clean("d", [0.895, 0.875, 0.905, 0.865, 0.915])
    board = [r for r in ranking(rows, n_boot=500, seed=1) if r.sparsity == 0.9]
    assert [r.method for r in board] == ["a", "b", "d", "c"]
    by = {r.method: r for r in board}
    assert by["a"].rank == 1 and (by["a"].rank_low, by["a"].rank_high) == (1, 1)
    assert by["b"].rank == 2 and (by["b"].rank_low, by["b"].rank_high) == (2, 2)
    assert (by["c"].rank_low, by["c"].rank_high) == (3, 4)
    assert (by["d"].rank_low, by["d"].rank_high) == (3, 4)
    for r in board:
        assert r.rank_low <= r.rank <= r.rank_high  # type: ignore[operator]
    assert by["a"].mean == pytest.approx(93.0)
    s = summarize([93.0, 93.1, 92.9, 93.2, 92.8])
    assert by["a"].ci_low == pytest.approx(s.ci_low) and by["a"].ci_high == pytest.approx(s.ci_high)


def test_ranking_is_reproducible() -> None:
    """The same bootstrap seed gives the same intervals."""
    rows = _clean("a", [0.90, 0.92, 0.91]) + _clean("b", [0.91, 0.90, 0.92])
    assert ranking(rows, n_boot=200, seed=3) == ranking(rows, n_boot=200, seed=3)


def test_overall_rank_is_mean_rank_across_sparsities() -> None:
    """First at one sparsity and second at the other: mean rank 1.5."""
    rows = _clean("a", [0.93, 0.93], 0.9) + _clean("b", [0.92, 0.92], 0.9)
    rows += _clean("a", [0.90, 0.90], 0.95) + _clean("b", [0.91, 0.91], 0.95)
    overall = {r.method: r for r in ranking(rows, n_boot=100) if r.sparsity is None}
    assert overall["a"].rank == 1.5 and overall["b"].rank == 1.5
    assert overall["a"].n == 2 and overall["a"].mean == pytest.approx(91.5)


def test_vs_random_ticket_paired_by_seed() -> None:
    """snip − random_ticket per seed = 1.0, 1.2, 0.8, 1.0 points: mean 1.0, CI by hand."""
    rt = [0.900, 0.880, 0.910, 0.890]
    snip = [0.910, 0.892, 0.918, 0.900]
    rows = _clean("random_ticket", rt) + _clean("snip", snip)
    by = {r.method: r for r in ranking(rows, n_boot=100) if r.sparsity == 0.9}
    delta = by["snip"].vs_random_ticket
    assert delta is not None and delta.paired and delta.n == 4
    sd = math.sqrt((0.0 + 0.04 + 0.04 + 0.0) / 3)
    assert delta.mean == pytest.approx(1.0)
    assert delta.ci_low == pytest.approx(1.0 - T_TABLE[3] * sd / 2, abs=1e-3)
    assert by["random_ticket"].vs_random_ticket is None


def test_vs_random_ticket_unpaired_when_seeds_differ() -> None:
    """No shared seeds: Welch's difference of means, marked unpaired."""
    values = {0: 91.0, 1: 92.0, 2: 93.0}
    reference = {10: 90.0, 11: 90.5, 12: 89.5}
    delta = difference(values, reference)
    assert delta is not None and not delta.paired
    assert delta.mean == pytest.approx(2.0)
    assert delta.ci_low is not None and delta.ci_low < 2.0 < delta.ci_high  # type: ignore[operator]
    single = difference({0: 91.0}, {5: 90.0})
    assert single is not None and single.ci_low is None and single.mean == pytest.approx(1.0)


def test_dense_is_the_unranked_reference_of_every_board() -> None:
    """Dense rows (sparsity 0) appear, unranked, at the bottom of every sparsity's board."""
    rows = _clean("dense", [0.95, 0.94], 0.0) + _clean("a", [0.90, 0.91], 0.9) + _clean("a", [0.85, 0.86], 0.98)
    ranks = ranking(rows, n_boot=50)
    for sparsity in (0.9, 0.98):
        board = [r for r in ranks if r.sparsity == sparsity]
        assert [r.method for r in board] == ["a", "dense"]
        assert board[-1].reference and board[-1].rank is None
        assert board[-1].mean == pytest.approx(94.5)
    assert all(r.method != "dense" for r in ranks if r.sparsity is None)

