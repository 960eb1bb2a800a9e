"""The sequential rule that adds seeds until a verdict: its error rates under repeated looks
(simulation with known effects and a fixed seed), its power, and its API."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import special
from scipy.stats import binomtest

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import (
    SequentialDesign,
    check_effects,
    decide_all,
    next_seeds,
    paired_differences,
    paired_test,
    pocock_level,
)

ALPHA = 0.05
MARGIN = 1.0


def simulate(
    design: SequentialDesign, mu: float, sd: float, sims: int, seed: int
) -> tuple[Counter[str], float]:
    """Verdict counts of ``design.decide`` on ``sims`` pairs whose differences are
    N(mu, sd²), and the mean number of seeds the decisions took."""
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter()
    used = 0
    for _ in range(sims):
        decision = design.decide(list(rng.normal(mu, sd, design.max_seeds)))
        counts[decision.verdict] += 1
        used += decision.n
    return counts, used / sims


def not_above(count: int, sims: int, level: float) -> bool:
    """No evidence (one-sided binomial test at 1 %) that the true rate exceeds ``level``."""
    return binomtest(count, sims, level, alternative="greater").pvalue > 0.01


def test_no_effect_is_not_called_passes_or_raises_beyond_alpha() -> None:
    """Δ ~ N(0, 1.5²), looks after every seed from 3 to 10: "passes" and "raises accuracy"
    each come out at most alpha of the time, and the same simulation catches the peeking
    bias of testing at alpha at every look (well above alpha)."""
    design = SequentialDesign(alpha=ALPHA, margin=MARGIN, min_seeds=3, max_seeds=10)
    sims = 2000
    counts, _ = simulate(design, 0.0, 1.5, sims, seed=11)
    assert not_above(counts["passes"], sims, ALPHA), counts
    assert not_above(counts["raises accuracy"], sims, ALPHA), counts

    rng = np.random.default_rng(11)
    naive = 0
    for _ in range(sims):
        diffs = rng.normal(0.0, 1.5, 10)
        for n in range(3, 11):
            verdict = paired_test(diffs[:n], margin=MARGIN, alpha=ALPHA).verdict
            if verdict != "inconclusive":
                naive += verdict == "passes"
                break
    assert naive / sims > 1.8 * ALPHA and not not_above(naive, sims, ALPHA)


@pytest.mark.parametrize("mu", [MARGIN, -MARGIN])
def test_effect_on_the_margin_is_not_called_fails_beyond_alpha(mu: float) -> None:
    """Δ ~ N(±margin, 1.5²), the worst case for equivalence: "fails" at most alpha of the time."""
    design = SequentialDesign(alpha=ALPHA, margin=MARGIN, min_seeds=3, max_seeds=10)
    sims = 1500
    counts, _ = simulate(design, mu, 1.5, sims, seed=12)
    assert not_above(counts["fails"], sims, ALPHA), counts


def test_bonferroni_boundary_keeps_its_level_too() -> None:
    """The Bonferroni split (alpha / 8 per look) keeps "passes" under alpha for no effect."""
    design = SequentialDesign(boundary="bonferroni", min_seeds=3, max_seeds=10)
    assert design.level() == pytest.approx(ALPHA / 8)
    sims = 1000
    counts, _ = simulate(design, 0.0, 1.5, sims, seed=13)
    assert not_above(counts["passes"], sims, ALPHA), counts


def test_power_for_clear_effects() -> None:
    """A drop of 3 ± 1.5 points is called "passes" in ≥ 95 % of pairs, mostly within 5 seeds;
    no effect with SD 0.5 is called "fails" (margin ±1) in ≥ 90 %, within 6 seeds on average."""
    design = SequentialDesign(alpha=ALPHA, margin=MARGIN, min_seeds=3, max_seeds=10)
    drop, seeds = simulate(design, 3.0, 1.5, 500, seed=14)
    assert drop["passes"] / 500 >= 0.95 and seeds <= 5.0
    same, seeds = simulate(design, 0.0, 0.5, 500, seed=15)
    assert same["fails"] / 500 >= 0.90 and seeds <= 6.0


def test_pocock_level_calibration_holds_on_fresh_paths() -> None:
    """On 200,000 fresh standard-normal sequences (another generator seed), a one-sided t test
    at the calibrated level rejects at some n in 3..10 with rate ≤ alpha (+3 SE), and well above
    the Bonferroni rate: the level is neither too loose nor needlessly strict."""
    level = pocock_level(ALPHA, 3, 10)
    assert ALPHA / 8 < level < ALPHA
    rng = np.random.default_rng(2024)
    z = rng.standard_normal((200_000, 10))
    ns = np.arange(3, 11)
    s1 = np.cumsum(z, axis=1)[:, ns - 1]
    s2 = np.cumsum(z * z, axis=1)[:, ns - 1]
    mean = s1 / ns
    sd = np.sqrt((s2 - ns * mean**2) / (ns - 1))
    p = special.stdtr(ns - 1, -mean / (sd / np.sqrt(ns)))
    rate = float((p.min(axis=1) < level).mean())
    se = np.sqrt(ALPHA * (1 - ALPHA) / len(z))
    assert ALPHA - 6 * se < rate <= ALPHA + 3 * se


def test_fixed_seed_design_is_the_plain_test() -> None:
    """min_seeds == max_seeds: one look at level alpha, the fixed-seed verdict."""
    design = SequentialDesign(min_seeds=5, max_seeds=5)
    assert design.level() == ALPHA
    diffs = [0.3, -0.2, 0.1, 0.0, -0.1]
    assert design.decide(diffs).verdict == paired_test(diffs).verdict == "fails"


def test_decisions_and_next_seeds() -> None:
    """next_seeds names the undecided pairs only: too few seeds, or inconclusive with budget
    left; decided and exhausted pairs get no more seeds. A decision records the seeds it took
    and ignores later ones."""
    design = SequentialDesign(min_seeds=3, max_seeds=6)
    pairs = {
        "new": [5.0],
        "clear drop": [10.0, 10.5, 9.5, 10.2],
        "noisy": [3.0, -3.0, 1.0],
        "spent": [3.0, -3.0, 1.0, -2.0, 2.5, -1.0],
        "drop then noise": [10.0, 10.5, 9.5, -30.0, 40.0],
    }
    decisions = decide_all(pairs, design)
    assert decisions["new"].status == "undecided" and decisions["new"].verdict == "too few seeds"
    assert (
        decisions["clear drop"].status == "decided" and decisions["clear drop"].verdict == "passes"
    )
    assert decisions["clear drop"].n == 3
    assert decisions["noisy"].status == "undecided" and decisions["noisy"].verdict == "inconclusive"
    assert decisions["spent"].status == "exhausted" and decisions["spent"].verdict == "inconclusive"
    late = decisions["drop then noise"]
    assert late.verdict == "passes" and late.n == 3 and "not used" in late.note
    assert next_seeds(pairs, design) == {"new", "noisy"}


def _row(method: str, check: str, seed: int, accuracy: float) -> ResultRow:
    return ResultRow(
        key=f"{method}/{check}/{seed}",
        suite="t",
        model="net",
        dataset="data",
        method=method,
        check=check,
        sparsity=0.9,
        seed=seed,
        protocol="p",
        status="done",
        final_accuracy=accuracy,
    )


def test_check_effects_with_a_design_report_the_sequential_verdict() -> None:
    """With a design, check_effects uses the rule's level and deciding seed count, and
    paired_differences gives next_seeds its input from stored rows."""
    clean = [0.90, 0.91, 0.92, 0.90, 0.91]
    checked = [0.80, 0.805, 0.81, 0.95, 0.70]
    rows = [_row("m", "none", s, a) for s, a in enumerate(clean)]
    rows += [_row("m", "c", s, a) for s, a in enumerate(checked)]
    design = SequentialDesign(min_seeds=3, max_seeds=10)
    (effect,) = check_effects(rows, design=design)
    assert effect.sequential and effect.verdict == "passes" and effect.seeds_used == 3
    assert effect.seeds == (0, 1, 2) and effect.alpha == pytest.approx(design.level())
    diffs = paired_differences(rows)
    assert next(iter(diffs.values())) == pytest.approx([10.0, 10.5, 11.0, -5.0, 21.0])
    assert next_seeds(diffs, design) == set()
