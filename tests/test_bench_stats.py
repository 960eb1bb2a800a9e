"""Benchmark statistics: t quantiles, paired tests and verdicts, intervals, granularity,
rankings."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import (
    COMBINATION_RULE,
    accuracy_granularity,
    check_effects,
    decided_fraction,
    difference,
    paired_test,
    ranking,
    seeds_needed,
    summarize,
    t_quantile,
    verdict_matrix,
)

# Student-t critical values from a printed table
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042}  # two-sided 95 %
T_95 = {2: 2.920, 3: 2.353, 4: 2.132, 9: 1.833}  # one-sided 95 % (two-sided 90 %)


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
    environment: dict[str, object] | None = None,
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
        environment=dict(environment or {}),
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


def from_diffs(
    diffs: Sequence[float], method: str = "m", check: str = "c", sparsity: float = 0.9
) -> list[ResultRow]:
    """Rows whose paired differences (points) are ``diffs``; clean accuracies vary by seed."""
    clean = [0.80 + 0.01 * (i % 5) for i in range(len(diffs))]
    return paired(method, check, clean, [c - d / 100 for c, d in zip(clean, diffs)], sparsity)


def test_t_quantile_matches_printed_table() -> None:
    """t_quantile agrees with a printed t table to 3 decimals and refuses bad arguments."""
    for df, expected in T_975.items():
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    for df, expected in T_95.items():
        assert t_quantile(0.95, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(0.025, 3) == pytest.approx(-T_975[3], abs=5e-4)
    with pytest.raises(ValueError, match="p must"):
        t_quantile(1.0, 3)


def test_interval_for_three_seeds_is_the_90_percent_t_interval() -> None:
    """n = 3 at alpha 0.05: interval = mean ± 2.920 · SD/√3, computed here by hand."""
    rows = paired("snip", "random_labels", [0.90, 0.91, 0.92], [0.85, 0.85, 0.85])
    (effect,) = check_effects(rows)
    diffs = [5.0, 6.0, 7.0]  # points
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = T_95[2] * sd / math.sqrt(3)
    assert effect.n == 3 and effect.seeds == (0, 1, 2) and effect.seeds_used == 3
    assert effect.mean == pytest.approx(mean) and effect.sd == pytest.approx(sd)
    assert effect.ci_low == pytest.approx(mean - half, abs=1e-3)
    assert effect.ci_high == pytest.approx(mean + half, abs=1e-3)
    assert effect.confidence == pytest.approx(0.90)
    assert effect.clean_mean == pytest.approx(91.0) and effect.perturbed_mean == pytest.approx(85.0)
    assert effect.verdict == "passes"


def test_passes_exactly_when_t_exceeds_the_one_sided_critical_value() -> None:
    """Five seeds with SD 1: the drop passes when mean·√5 > 2.132 (t table), not just below."""
    base = [-1.2649, -0.6325, 0.0, 0.6325, 1.2649]  # mean 0, sample SD 1.0000
    assert math.sqrt(sum(b * b for b in base) / 4) == pytest.approx(1.0, abs=1e-4)
    critical = T_95[4] / math.sqrt(5)  # 0.9534 points
    above = paired_test([b + critical + 0.01 for b in base], margin=0.0)
    below = paired_test([b + critical - 0.01 for b in base], margin=0.0)
    assert above.verdict == "passes" and above.p_lowers is not None and above.p_lowers < 0.05
    assert below.verdict == "inconclusive" and below.p_lowers is not None and below.p_lowers > 0.05
    raised = paired_test([b - critical - 0.01 for b in base], margin=0.0)
    assert raised.verdict == "raises accuracy"


def test_fails_is_tost_with_the_margin() -> None:
    """Mean 0, SD 1, 5 seeds: TOST needs margin > 2.132/√5 = 0.953 points; the margin is an
    argument, so the same data fail at margin 1 and stay inconclusive at margin 0.9."""
    base = [-1.2649, -0.6325, 0.0, 0.6325, 1.2649]
    wide = paired_test(base, margin=1.0)
    narrow = paired_test(base, margin=0.9)
    assert wide.verdict == "fails" and wide.p_equivalent is not None and wide.p_equivalent < 0.05
    assert narrow.verdict == "inconclusive"
    (effect,) = check_effects(from_diffs(base), margin=1.0)
    assert effect.verdict == "fails" and effect.margin == 1.0
    assert effect.ci_low is not None and effect.ci_high is not None
    assert effect.ci_low > -1.0 and effect.ci_high < 1.0
    (strict,) = check_effects(from_diffs(base), margin=0.9)
    assert strict.verdict == "inconclusive"


def test_small_real_drop_inside_the_margin_reads_fails_with_a_note() -> None:
    """A drop of 0.5 ± 0.05 points over 6 seeds is significant and inside ±1: "fails", and the
    note says the drop is real but smaller than the margin."""
    (effect,) = check_effects(from_diffs([0.45, 0.5, 0.55, 0.5, 0.48, 0.52]))
    assert effect.verdict == "fails"
    assert effect.p_lowers is not None and effect.p_lowers < 0.05
    assert "real but small drop" in effect.note


def test_check_that_raises_accuracy() -> None:
    """The check raises accuracy by 5 ± 1 points over 4 seeds: "raises accuracy"."""
    (effect,) = check_effects(from_diffs([-4.0, -5.0, -6.0, -5.0]))
    assert effect.verdict == "raises accuracy"
    assert effect.ci_high is not None and effect.ci_high < 0


def test_fewer_than_three_seeds_have_no_interval() -> None:
    """Two seeds whose differences coincide (+14.48 twice) are "too few seeds", with no
    interval and no test; one seed likewise."""
    (two,) = check_effects(from_diffs([14.48, 14.48]))
    assert two.verdict == "too few seeds" and two.n == 2
    assert two.ci_low is None and two.ci_high is None and two.p_lowers is None
    assert "need ≥ 3" in two.note
    (one,) = check_effects(paired("snip", "random_pixels", [0.90], [0.70]))
    assert one.verdict == "too few seeds" and one.mean == pytest.approx(20.0) and one.ci_low is None


def test_no_seed_variance_is_said_not_shown_as_an_interval() -> None:
    """Three seeds with the same difference up to float rounding: no interval, the note says
    "no seed variance"; the verdict follows the difference's sign and size."""
    (drop,) = check_effects(paired("m", "c", [0.93, 0.931, 0.9315], [0.88, 0.881, 0.8815]))
    assert drop.sd == 0.0 and drop.no_variance
    assert drop.ci_low is None and drop.ci_high is None
    assert drop.verdict == "passes" and "no seed variance" in drop.note
    (same,) = check_effects(paired("m", "c", [0.93, 0.931, 0.9315], [0.9305, 0.9315, 0.932]))
    assert same.verdict == "fails" and same.no_variance


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
    rows = paired("snip", "random_labels", [0.9, 0.91, 0.92], [0.8, 0.8, 0.81], protocol="A")
    rows += paired("snip", "random_labels", [0.9, 0.91, 0.92], [0.9, 0.909, 0.921], protocol="B")
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


def test_seeds_needed_matches_a_brute_force_search() -> None:
    """seeds_needed is the first m at which a one-sided test or TOST would decide at the
    observed mean and SD (t table by scipy), and None where no count can."""

    def brute(mean: float, sd: float, margin: float) -> int:
        m = 3
        while True:
            tq = t_quantile(0.95, m - 1) * sd / math.sqrt(m)
            if abs(mean) > tq or margin - abs(mean) > tq:
                return m
            m += 1

    for mean, sd in ((3.0, 2.0), (0.1, 1.0), (1.5, 1.0), (-0.5, 0.7), (0.98, 1.0)):
        assert seeds_needed(mean, sd, 2, margin=1.0, alpha=0.05) == brute(mean, sd, 1.0)
        assert seeds_needed(mean, sd, 3, margin=0.5, alpha=0.05) == max(4, brute(mean, sd, 0.5))
    assert seeds_needed(3.0, 0.0, 3) is None
    assert seeds_needed(0.0, 1.0, 3, margin=0.0) is None


def test_inconclusive_effect_says_how_many_seeds_would_decide() -> None:
    """Differences 0.5, 2.5, 1.5: inconclusive at 3 seeds, with the planning figure."""
    (effect,) = check_effects(from_diffs([0.5, 2.5, 1.5]))
    assert effect.verdict == "inconclusive"
    assert effect.seeds_needed == seeds_needed(1.5, 1.0, 3)
    assert f"~{effect.seeds_needed} seeds" in effect.note


def test_settings_are_checked() -> None:
    """An alpha outside (0, 0.5), a negative margin or a bad confidence is refused."""
    with pytest.raises(ValueError, match="alpha"):
        check_effects([], alpha=0.5)
    with pytest.raises(ValueError, match="margin"):
        check_effects([], margin=-1.0)
    with pytest.raises(ValueError, match="confidence"):
        ranking([], confidence=1.0)


def test_verdict_matrix_collapses_sparsities() -> None:
    """One entry per (method, check): the shared verdict, or "mixed" with the counts and each
    sparsity's verdict; "decided" only when every sparsity is."""
    rows = from_diffs([10.0, 11.0, 9.0], "lrr", "half_dataset", 0.9)
    rows += from_diffs([0.1, -0.1, 0.0, 0.05], "lrr", "half_dataset", 0.95)
    rows += from_diffs([0.1, -0.1, 0.0, 0.05], "snip", "reinit", 0.9)
    rows += from_diffs([0.1, -0.1, 0.0, 0.05], "snip", "reinit", 0.95)
    rows += from_diffs([3.0, -3.0, 1.0], "grasp", "reinit", 0.9)
    matrix = {(v.method, v.check): v for v in verdict_matrix(check_effects(rows))}
    mixed = matrix[("lrr", "half_dataset")]
    assert mixed.verdict == "mixed" and mixed.counts == {"passes": 1, "fails": 1}
    assert mixed.text() == "mixed: passes at 90%, fails at 95%"
    assert mixed.decided and mixed.seeds_used == (3, 4)
    assert matrix[("snip", "reinit")].verdict == "fails"
    assert matrix[("snip", "reinit")].sparsities == (0.9, 0.95)
    assert not matrix[("grasp", "reinit")].decided
    assert decided_fraction(list(matrix.values())) == pytest.approx(2 / 3)
    assert "intersection-union" in COMBINATION_RULE


def test_granularity_inferred_from_accuracies_or_recorded() -> None:
    """Accuracies that are counts over 360 test images give 360 images (0.278 points each);
    a recorded test_size wins over inference."""
    rows = [row("m", "none", 0.9, s, k / 360) for s, k in enumerate((331, 300, 347))]
    (g,) = accuracy_granularity(rows)
    assert g.n_test == 360 and g.points == pytest.approx(100 / 360) and g.source == "inferred"
    assert "360 test images" in g.text() and "0.278 points" in g.text()
    recorded = [row("m", "none", 0.9, 0, 0.5, dataset="d2", environment={"test_size": 10000})]
    (r,) = accuracy_granularity(recorded)
    assert (r.dataset, r.n_test, r.source) == ("d2", 10000, "recorded")


def test_summary_needs_three_values_and_clips_to_bounds() -> None:
    """No interval from two values; an interval that would pass 100 points is clipped and
    marked; equal values give no interval ("no seed variance")."""
    assert summarize([90.0, 91.0]).ci_low is None
    s = summarize([99.9, 99.0, 99.95], bounds=(0.0, 100.0))
    assert s.ci_high == 100.0 and s.ci_clipped and s.ci_low is not None and s.ci_low < 99.0
    unclipped = summarize([99.9, 99.0, 99.95])
    assert unclipped.ci_high is not None and unclipped.ci_high > 100.0
    flat = summarize([93.0, 93.0, 93.0])
    assert flat.no_variance and flat.ci_low is None


def _clean(
    method: str, accuracies: Sequence[float], sparsity: float = 0.9, **kw: str
) -> list[ResultRow]:
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
    half = T_975[4] * math.sqrt(0.025) / math.sqrt(5)  # SD of 93.0 ± 0.1, 0.2: √0.025
    assert by["a"].ci_low == pytest.approx(93.0 - half, abs=1e-3)
    assert by["a"].ci_high == pytest.approx(93.0 + half, abs=1e-3)


def test_ranking_clips_accuracy_intervals_at_100() -> None:
    """A method near 100 % gets an interval cut at 100 points and marked clipped."""
    rows = _clean("a", [0.999, 0.990, 0.9995])
    (r,) = [r for r in ranking(rows, n_boot=50) if r.sparsity == 0.9]
    assert r.ci_high == 100.0 and r.ci_clipped


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
    assert delta.ci_low == pytest.approx(1.0 - T_975[3] * sd / 2, abs=1e-3)
    assert by["random_ticket"].vs_random_ticket is None


def test_vs_random_ticket_without_enough_seeds_or_variance() -> None:
    """Welch's interval when no seed is shared; none from fewer than 3 seeds ("too few
    seeds") nor from equal differences ("no seed variance")."""
    delta = difference({0: 91.0, 1: 92.0, 2: 93.0}, {10: 90.0, 11: 90.5, 12: 89.5})
    assert delta is not None and not delta.paired
    assert delta.mean == pytest.approx(2.0)
    assert delta.ci_low is not None and delta.ci_low < 2.0 < delta.ci_high  # type: ignore[operator]
    single = difference({0: 91.0}, {5: 90.0})
    assert single is not None and single.ci_low is None and single.note == "too few seeds"
    two = difference({0: 91.0, 1: 92.0}, {0: 90.0, 1: 90.5})
    assert two is not None and two.paired and two.ci_low is None and two.note == "too few seeds"
    flat = difference({0: 91.0, 1: 92.0, 2: 93.0}, {0: 90.0, 1: 91.0, 2: 92.0})
    assert flat is not None and flat.ci_low is None and flat.note == "no seed variance"


def test_dense_is_the_unranked_reference_of_every_board() -> None:
    """Dense rows (sparsity 0) appear, unranked, at the bottom of every sparsity's board."""
    rows = (
        _clean("dense", [0.95, 0.94], 0.0)
        + _clean("a", [0.90, 0.91], 0.9)
        + _clean("a", [0.85, 0.86], 0.98)
    )
    ranks = ranking(rows, n_boot=50)
    for sparsity in (0.9, 0.98):
        board = [r for r in ranks if r.sparsity == sparsity]
        assert [r.method for r in board] == ["a", "dense"]
        assert board[-1].reference and board[-1].rank is None
        assert board[-1].mean == pytest.approx(94.5)
    assert all(r.method != "dense" for r in ranks if r.sparsity is None)
