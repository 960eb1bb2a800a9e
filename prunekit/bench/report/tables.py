"""A report's content as plain tables (:class:`Table`) that every renderer draws, and the
labels it uses, each explained once (:func:`glossary`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import attrs

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import (
    COMBINATION_RULE,
    MIN_SEEDS,
    Delta,
    Effect,
    Rank,
    VerdictSummary,
)
from prunekit.sentinels import CLEAN_CHECK

from .data import (
    ACCURACY_BOUNDS,
    DASH,
    DELTA_BOUNDS,
    ReportData,
    clip,
    effect_bounds,
    failure_summary,
    first_line,
    range_text,
)

VERDICT_STYLES = {
    "passes": "green",
    "fails": "red",
    "raises accuracy": "cyan",
    "inconclusive": "yellow",
    "too few seeds": "dim",
    "mixed": "magenta",
}
VERDICT_COLOURS = {
    "passes": "#1a7f37",
    "fails": "#cf222e",
    "raises accuracy": "#0969da",
    "inconclusive": "#9a6700",
    "too few seeds": "#6e7781",
    "mixed": "#8250df",
}
VERDICT_MARKS = {
    "passes": "P",
    "fails": "F",
    "raises accuracy": "R",
    "inconclusive": "?",
    "too few seeds": f"<{MIN_SEEDS}",
}
CLIPPED = "(clipped)"
NO_VARIANCE = "(no seed variance)"
TOO_FEW = "(too few seeds)"
UNPAIRED = "(unpaired)"


@attrs.frozen(kw_only=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    verdict_columns: frozenset[int] = frozenset()  # cells coloured by the verdict they name


def pct(sparsity: float) -> str:
    return f"{sparsity * 100:.4g}%"


def num(x: float | None, fmt: str = ".2f") -> str:
    import math

    return DASH if x is None or not math.isfinite(x) else format(x, fmt)


# ------------------------------------------------------------------------------- labels
def verdict_label(v: VerdictSummary) -> str:
    """A (method, check)'s verdict over its sparsities, in words: "passes" (one sparsity),
    "passes at both sparsities", "fails at all 3 sparsities", or "mixed: passes at 90%, …"."""
    n = len(v.by_sparsity) or sum(v.counts.values())
    if v.verdict == "mixed":
        return v.text()
    if n <= 1:
        return v.verdict
    return f"{v.verdict} at both sparsities" if n == 2 else f"{v.verdict} at all {n} sparsities"


def verdict_key(cell: str) -> str:
    """The verdict a table cell starts with (the longest name that matches), or ""."""
    names = sorted(VERDICT_STYLES, key=len, reverse=True)
    return next((name for name in names if cell.startswith(name)), "")


def verdict_rules(data: ReportData) -> str:
    """The verdicts' definitions and error rates, in words (the verdict tables' caption)."""
    level, margin = data.level, data.margin
    rules = (
        f"Δ = clean − with check, paired by seed. passes: a one-sided t test finds the check lowers "
        f"accuracy (a check that does not is called 'passes' with probability ≤ {level:g}); fails: "
        f"equivalence by two one-sided t tests (TOST) with margin ±{margin:g} point(s) (a check that "
        f"changes accuracy by {margin:g} or more is called 'fails' with probability ≤ {level:g}), "
        f"also when a real drop is smaller than the margin; raises accuracy: a one-sided t test finds "
        f"the check raises it; otherwise inconclusive; too few seeds: fewer than {MIN_SEEDS} paired "
        "seeds, no test. Error rates hold per verdict and per pair, not across the table."
    )
    if data.design is not None:
        rules += " " + data.design.describe() + "."
    return rules + " " + COMBINATION_RULE


def glossary(data: ReportData) -> list[tuple[str, str]]:
    """Every label a report uses, with its meaning (the "How to read" section)."""
    level, margin = data.level, data.margin
    effect_conf = 1 - 2 * (data.alpha if data.design is None else data.design.level())
    conf = f"{data.confidence:.0%}"
    return [
        (
            "passes",
            (
                "the check lowers accuracy: a one-sided paired t test on Δ = clean − with check rejects "
                f"'no drop' at level {level:g}. A method passing a check such as random labels uses the "
                "information the check destroys."
            ),
        ),
        (
            "fails",
            (
                f"the check leaves accuracy unchanged: two one-sided t tests (TOST) put Δ inside ±{margin:g} "
                f"accuracy point(s) at level {level:g}; also when a real drop is smaller than that margin."
            ),
        ),
        (
            "raises accuracy",
            (
                "the check significantly raises accuracy: a one-sided t test rejects 'no gain' at "
                f"level {level:g} (and Δ is not inside the margin)."
            ),
        ),
        (
            "inconclusive",
            "none of the three tests decides; the note estimates the seeds that would.",
        ),
        ("too few seeds", f"fewer than {MIN_SEEDS} paired seeds: no test and no interval."),
        (
            "… at both sparsities / at all N sparsities",
            (
                "the same verdict at every sparsity run; that joint claim keeps the per-sparsity error "
                "rate (each sparsity had to reject on its own)."
            ),
        ),
        (
            "mixed: A at x%, B at y%",
            "the sparsities disagree; each verdict holds at its own sparsity only.",
        ),
        (
            "P, F, R, ?, <3",
            (
                "the heat map's marks: passes, fails, raises accuracy, inconclusive, too few seeds; "
                "grey cells: not run or not applicable."
            ),
        ),
        (
            "mean ± h",
            (
                "leaderboard: mean final test accuracy over seeds and the half-width of its two-sided "
                f"{conf} t confidence interval."
            ),
        ),
        (
            "effect [low, high]",
            (
                f"check effects: mean Δ in accuracy points and its two-sided {effect_conf:.0%} t interval "
                f"(passes ⇔ above 0, raises accuracy ⇔ below 0, fails ⇔ inside ±{margin:g})."
            ),
        ),
        (
            f"Δ vs {data.reference_method}",
            f"method − {data.reference_label} at the same sparsity, paired by seed, with its {conf} t interval.",
        ),
        (
            CLIPPED,
            (
                "the interval reached past what the quantity can be (accuracy: 0–100; an effect: "
                "[clean − 100, clean]; a difference: ±100) and is shown cut at that bound."
            ),
        ),
        (
            NO_VARIANCE,
            (
                "every seed gave the same value (or difference): no interval; a verdict follows the "
                "value's sign and size."
            ),
        ),
        (TOO_FEW, f"fewer than {MIN_SEEDS} seeds: no interval."),
        (
            UNPAIRED,
            "the two sides share fewer than two seeds: difference of means with Welch's interval.",
        ),
        ("ref", "the dense network: shown as the reference, not ranked."),
        (
            "rank interval a–b",
            f"2.5–97.5 percentiles of the rank over {data.n_boot} bootstrap draws of the seeds.",
        ),
        (
            "asked / achieved / effective sparsity",
            (
                "asked: the target; achieved: the fraction of prunable weights the masks remove; "
                "effective: the fraction removed or cut off from the input or the output (so it cannot "
                "matter). Percent of prunable weights; '–' where not computed."
            ),
        ),
        (
            "diverged",
            "training stopped because the loss or the weights were not finite: counted per method, never ranked.",
        ),
        (
            "stale",
            (
                "a stored row that today's code, options or plugin versions would key differently: shown, "
                "never used in statistics."
            ),
        ),
        (
            "not applicable",
            "the check does not apply to the method (the reason is stored); not run.",
        ),
        (DASH, "no value: not run, not computed, or nothing to compare with."),
    ]


# ------------------------------------------------------------------------------- helpers
def _interval(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return DASH
    return f"{_rank_text(lo)}–{_rank_text(hi)}"


def _rank_text(rank: float | None) -> str:
    return DASH if rank is None else f"{rank:.2f}".rstrip("0").rstrip(".")


def mean_ci(r: Rank) -> str:
    """Mean ± half-width; [low, high] (clipped) when cut at 0 or 100; no interval below
    MIN_SEEDS seeds or when every seed gave the same accuracy."""
    if r.mean is None:
        return DASH
    if r.ci_low is None or r.ci_high is None:
        if r.n >= MIN_SEEDS and r.sd == 0.0:
            return f"{r.mean:.2f} {NO_VARIANCE}"
        return f"{r.mean:.2f} {TOO_FEW}" if r.n < MIN_SEEDS else num(r.mean)
    lo, hi, clipped = clip(r.ci_low, r.ci_high, ACCURACY_BOUNDS)
    if clipped or r.ci_clipped:
        return f"{r.mean:.2f} [{lo:.2f}, {hi:.2f}] {CLIPPED}"
    return f"{r.mean:.2f} ± {(r.ci_high - r.ci_low) / 2:.2f}"


def delta_text(delta: Delta | None) -> str:
    if delta is None:
        return DASH
    text = f"{delta.mean:+.2f}"
    if delta.ci_low is not None and delta.ci_high is not None:
        lo, hi, clipped = clip(delta.ci_low, delta.ci_high, DELTA_BOUNDS)
        text += f" [{lo:+.2f}, {hi:+.2f}]" + (f" {CLIPPED}" if clipped else "")
    elif delta.note:
        text += f" ({delta.note})"
    return text + ("" if delta.paired else f" {UNPAIRED}")


def effect_text(e: Effect) -> str:
    if e.mean is None:
        return DASH
    text = f"{e.mean:+.2f}"
    if e.ci_low is not None and e.ci_high is not None:
        lo, hi, clipped = clip(e.ci_low, e.ci_high, effect_bounds(e))
        return text + f" [{lo:+.2f}, {hi:+.2f}]" + (f" {CLIPPED}" if clipped else "")
    if e.no_variance:
        return f"{text} {NO_VARIANCE}"
    return text + (f" {TOO_FEW}" if e.n < MIN_SEEDS else "")


def _achieved(
    data: ReportData,
    protocol: str,
    model: str,
    dataset: str,
    method: str,
    check: str,
    sparsity: float,
) -> tuple[str, str]:
    found = data.achieved.get((protocol, model, dataset, method, check, sparsity))
    if found is None:
        return DASH, DASH
    return range_text(found.achieved), range_text(found.effective)


# ------------------------------------------------------------------------------- tables
def protocol_tables(data: ReportData) -> list[Table]:
    """The protocol of every fingerprint, setting by setting."""
    return [
        Table(
            title="Protocol" + (f" {g.label}" if g.label else ""),
            columns=("setting", "value"),
            rows=g.settings,
            caption=f"¹ protocol fingerprint (hash of the training and scoring protocol): {g.fingerprint}. "
            f"Read from the {g.rows} stored rows' cell spec, identity and environment.",
        )
        for g in data.protocols
    ]


def software_table(data: ReportData) -> Table | None:
    if not data.software:
        return None
    return Table(
        title="Software versions",
        columns=("component", "version", "provides"),
        rows=tuple((s.component, s.version, s.provides) for s in data.software),
        caption="core libraries from the rows' environment; plugins from each recipe part's recorded origin",
    )


def glossary_table(data: ReportData) -> Table:
    return Table(
        title="How to read this report", columns=("label", "meaning"), rows=tuple(glossary(data))
    )


def leaderboard_tables(data: ReportData) -> list[Table]:
    """One table per (protocol, model, dataset, sparsity), then each group's overall ranking."""
    boards: dict[tuple[str, str, str, float | None], list[Rank]] = defaultdict(list)
    for r in data.ranks:
        boards[(r.protocol, r.model, r.dataset, r.sparsity)].append(r)
    conf = f"{data.confidence:.0%}"
    tables = []
    for (protocol, model, dataset, sparsity), board in boards.items():
        group = data.group_title(protocol, model, dataset)
        if sparsity is None:
            tables.append(
                Table(
                    title=f"{group}: overall ranking (mean rank across sparsities)",
                    columns=(
                        "mean rank",
                        "method",
                        "sparsities",
                        "rank interval",
                        "mean final acc. %",
                    ),
                    rows=tuple(
                        (
                            _rank_text(r.rank),
                            r.method,
                            str(r.n),
                            _interval(r.rank_low, r.rank_high),
                            num(r.mean),
                        )
                        for r in board
                    ),
                    caption=f"rank interval: 2.5–97.5 percentiles over {data.n_boot} bootstrap draws of the seeds",
                )
            )
            continue
        rows = []
        for r in board:
            asked = 0.0 if r.reference else sparsity
            achieved, effective = _achieved(data, protocol, model, dataset, r.method, CLEAN_CHECK, asked)
            rows.append(
                (
                    "ref" if r.reference else _rank_text(r.rank),
                    r.method,
                    str(r.n),
                    mean_ci(r),
                    _interval(r.rank_low, r.rank_high),
                    delta_text(r.vs_random_ticket),
                    achieved,
                    effective,
                )
            )
        tables.append(
            Table(
                title=f"{group}: sparsity {pct(sparsity)} asked",
                columns=(
                    "rank",
                    "method",
                    "seeds",
                    f"final acc. % (mean ± {conf} CI)",
                    "rank interval",
                    f"Δ vs {data.reference_method}, points [{conf} CI]",
                    "achieved sparsity %",
                    "effective sparsity %",
                ),
                rows=tuple(rows),
                caption=(
                    f"clean runs (check none); accuracy intervals need ≥ {MIN_SEEDS} seeds and never leave "
                    "[0, 100] (cut ones are marked (clipped)); rank interval: 2.5–97.5 percentiles over "
                    f"{data.n_boot} bootstrap draws of the seeds; Δ paired by seed where possible; achieved "
                    "and effective sparsity over the seeds (a range when they differ)"
                    + (
                        "; dense is the unranked reference (sparsity 0)"
                        if any(r.reference for r in board)
                        else ""
                    )
                ),
            )
        )
    return tables


def verdict_tables(data: ReportData) -> list[Table]:
    """Method × check per (protocol, model, dataset); each cell over the sparsities run."""
    groups: dict[tuple[str, str, str], list[VerdictSummary]] = defaultdict(list)
    for v in data.verdicts:
        groups[(v.protocol, v.model, v.dataset)].append(v)
    tables = []
    for (protocol, model, dataset), verdicts in groups.items():
        checks = sorted({v.check for v in verdicts})
        methods = sorted({v.method for v in verdicts})
        cell = {(v.method, v.check): verdict_label(v) for v in verdicts}
        sparsities = sorted({s for v in verdicts for s in v.sparsities})
        tables.append(
            Table(
                title=f"{data.group_title(protocol, model, dataset)}: sanity-check verdicts "
                f"(sparsities {', '.join(pct(s) for s in sparsities)})",
                columns=("method", *checks),
                rows=tuple((m, *(cell.get((m, c), DASH) for c in checks)) for m in methods),
                caption=verdict_rules(data),
                verdict_columns=frozenset(range(1, len(checks) + 1)),
            )
        )
    return tables


def effect_tables(data: ReportData) -> list[Table]:
    groups: dict[tuple[str, str, str], list[Effect]] = defaultdict(list)
    for e in data.effects:
        groups[(e.protocol, e.model, e.dataset)].append(e)
    level = data.alpha if data.design is None else data.design.level()
    tables = []
    for key, effects in groups.items():
        rows = []
        for e in effects:
            _, clean_eff = _achieved(
                data, e.protocol, e.model, e.dataset, e.method, CLEAN_CHECK, e.sparsity
            )
            achieved, check_eff = _achieved(
                data, e.protocol, e.model, e.dataset, e.method, e.check, e.sparsity
            )
            rows.append(
                (
                    e.method,
                    e.check,
                    pct(e.sparsity),
                    achieved,
                    f"{clean_eff} → {check_eff}",
                    str(e.n),
                    num(e.clean_mean),
                    num(e.perturbed_mean),
                    effect_text(e),
                    e.verdict,
                    e.note,
                )
            )
        tables.append(
            Table(
                title=f"{data.group_title(*key)}: check effects",
                columns=(
                    "method",
                    "check",
                    "sparsity asked",
                    "achieved % (with check)",
                    "effective % (clean → with check)",
                    "seeds",
                    "clean %",
                    "with check %",
                    "effect, points [interval]",
                    "verdict",
                    "note",
                ),
                rows=tuple(rows),
                caption=(
                    "effect = clean − with check, paired by seed (positive: the check lowers accuracy); "
                    f"interval: two-sided {1 - 2 * level:.0%} t interval (passes ⇔ above 0, raises accuracy ⇔ "
                    f"below 0, fails ⇔ inside ±{data.margin:g}), cut to [clean − 100, clean], where an "
                    f"effect can lie (marked (clipped)); none from fewer than {MIN_SEEDS} seeds or without seed variance"
                    + "".join(f"; {g.text()}" for g in data.granularity)
                ),
                verdict_columns=frozenset({9}),
            )
        )
    return tables


def published_table(data: ReportData) -> Table | None:
    """Our clean runs beside each published number, in the metric it was published in (the
    authors' code logs best-epoch accuracy), with the t interval of our mean and its verdict."""
    if not data.published:
        return None
    metric = {"best_accuracy": "best epoch", "final_accuracy": "final epoch"}
    level = f"{data.published[0].confidence:.0%}"

    def ci(c: Any) -> str:
        lo, hi, clipped = clip(c.ci_low, c.ci_high, ACCURACY_BOUNDS)
        if lo is None or hi is None:
            return DASH
        return f"[{lo:.2f}, {hi:.2f}]" + (f" {CLIPPED}" if clipped else "")

    return Table(
        title="Published numbers beside ours",
        columns=(
            "model",
            "dataset",
            "method",
            "sparsity",
            "accuracy",
            "seeds",
            "ours: mean (min–max) %",
            f"{level} CI of our mean",
            "published %",
            "ours − published",
            "verdict",
            "source",
        ),
        rows=tuple(
            (
                c.model,
                c.dataset,
                c.method,
                pct(c.sparsity),
                metric.get(c.metric, c.metric),
                str(c.n),
                f"{c.measured_mean:.2f} ({c.measured_min:.2f}–{c.measured_max:.2f})",
                ci(c),
                f"{c.published.accuracy:.2f}",
                f"{c.difference:+.2f}",
                c.verdict,
                c.published.source + ("" if c.published.confirmed else " *"),
            )
            for c in data.published
        ),
        caption=(
            "test accuracy of the clean runs in the metric each number was published in (the "
            "authors' code logs the best epoch's); meaningful only under the paper's full protocol "
            f"(the paper suites). Consistent with published: the published number lies inside the "
            f"{level} t confidence interval of our mean over seeds (a two-sided t test at "
            f"{1 - data.published[0].confidence:.0%} does not reject equality; the published "
            "number's own seed noise is not counted); needs ≥ 3 seeds. * unconfirmed transcription"
        ),
    )


def _example(row: ResultRow) -> str:
    return f"{row.method} / {row.check} / {pct(row.sparsity)} / seed {row.seed}"


def diverged_table(data: ReportData) -> Table | None:
    counts = data.diverged()
    if not counts:
        return None
    where: dict[str, list[ResultRow]] = defaultdict(list)
    for r in data.rows:
        if r.status == "diverged":
            where[r.method].append(r)
    return Table(
        title="Diverged cells (training blew up; not ranked)",
        columns=("method", "diverged", "cells trained", "sparsities", "e.g."),
        rows=tuple(
            (
                m,
                str(d),
                str(n),
                ", ".join(pct(s) for s in sorted({r.sparsity for r in where[m]})),
                _example(where[m][0]),
            )
            for m, (d, n) in counts.items()
        ),
        caption="a diverged cell stopped because its loss or weights were not finite; it is a finding "
        "about the method under this protocol and enters no statistic",
    )


def failure_table(data: ReportData) -> Table | None:
    groups = failure_summary(data.rows)
    if not groups:
        return None
    return Table(
        title="Failed cells",
        columns=("cells", "error", "e.g."),
        rows=tuple((str(len(group)), message, _example(group[0])) for message, group in groups),
    )


def stale_table(data: ReportData) -> Table | None:
    """Rows stored by other code, options or plugin versions, grouped by why (never in the stats)."""
    groups: dict[str, list[ResultRow]] = defaultdict(list)
    for row in data.rows:
        if row.status == "stale":
            groups[first_line(row.error)].append(row)
    if not groups:
        return None
    return Table(
        title="Rows from other code, options or plugin versions: shown, never used in statistics",
        columns=("rows", "why", "example"),
        rows=tuple(
            (str(len(group)), why, _example(group[0]))
            for why, group in sorted(groups.items(), key=lambda kv: -len(kv[1]))
        ),
    )


def settings_line(data: ReportData) -> str:
    verdicts = (
        f"verdicts at error rate {data.alpha:g} each, equivalence margin ±{data.margin:g} point(s)"
        if data.design is None
        else data.design.describe()
    )
    grain = "; ".join(g.text() for g in data.granularity)
    return (
        f"{verdicts}; leaderboard intervals {data.confidence:.0%}, "
        f"{data.n_boot} bootstrap draws (seed {data.seed})"
        + (f"; test sets: {grain}" if grain else "")
    )


UNITS_LINE = (
    "Units: accuracies are in percent (accuracy points) and sparsities in percent of the prunable "
    "weights throughout this report and its figures; results.csv and report.json hold both as "
    "fractions in [0, 1]."
)
