"""The instruments' part of a report: tables, figures and W&B values from the rows'
``instruments`` column (see :mod:`prunekit.instruments` and :mod:`prunekit_plugins.instruments`).

Called by the report (``report.contents.sections`` and ``report.contents.render_figures``) and by the
W&B sink; everything here reads the rows only, so a stored bench can be reported again without
running anything. Only ``done`` rows count, and results are never pooled across protocol
fingerprints, models or datasets (as in :mod:`prunekit.bench.stats`).

Analyses across cells:

* **winning ticket?** (Ma et al. 2021): per (method, sparsity, learning rate), the ticket's final
  accuracy minus each baseline's, paired by seed, goes through
  :func:`prunekit.bench.stats.paired_test` at the report's margin and error rate. The ticket
  *beats* a baseline when the test says the difference is above 0 ("passes"), *ties* when it
  is within the margin ("fails"), *loses* when it is below 0. It is a winning ticket ("yes")
  when it beats both; "no" when it ties or loses against either; otherwise undecided.
* **mask stability**: the Jaccard overlap |A ∩ B| / |A ∪ B| of kept positions between seeds of a
  method, between each checked ticket and its clean ticket (same seed), and between methods at
  the same seed; for two independent random masks of density d it is d / (2 − d) in
  expectation, shown as the reference. Masks come from the ``mask_stability`` instrument's
  packed bits (every position, or the same seeded sample for every cell of a model: then the
  overlap is an estimate). The Spearman correlation of the round-1 scores across seeds
  (scipy) uses its sampled scores.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from prunekit.bench.records import ResultRow
from prunekit.bench.stats import MIN_SEEDS, PairedTest, paired_test
from prunekit.defaults import RANDOM_MASK_CHECK, REINIT_CHECK
from prunekit.sentinels import CLEAN_CHECK, DENSE_METHOD

if TYPE_CHECKING:
    from prunekit.bench.report.data import ReportData
    from prunekit.bench.report.plots import Figure
    from prunekit.bench.report.tables import Table

POINTS = 100.0
DASH = "–"
GroupKey = tuple[str, str, str]  # (protocol, model, dataset)
WINS = {"passes": "beats", "fails": "ties", "raises accuracy": "loses", "inconclusive": "undecided", "too few seeds": "too few seeds"}
INSTRUMENT_PLOTS = ("gradient_norm", "instability", "winning_ticket_lr", "mask_overlap")


# ------------------------------------------------------------------------------ reading
def measured(rows: Iterable[ResultRow], name: str) -> list[tuple[ResultRow, dict[str, Any]]]:
    """(row, measurement) of every done row that ``name`` measured without an error."""
    out = []
    for row in rows:
        entry = (row.instruments or {}).get(name) if row.status == "done" else None
        if isinstance(entry, dict) and "error" not in entry:
            out.append((row, entry))
    return out


def _group(row: ResultRow) -> GroupKey:
    return (row.protocol, row.model, row.dataset)


def _value(entry: dict[str, Any], key: str) -> Any:
    return (entry.get("values") or {}).get(key)


def _numbers(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def _mean_sd(values: Iterable[Any], scale: float = 1.0, fmt: str = ".2f") -> str:
    """"mean ± SD" (SD from two values on), or a dash when nothing was measured."""
    xs = [scale * v for v in _numbers(values)]
    if not xs:
        return DASH
    if len(xs) == 1:
        return format(xs[0], fmt)
    return f"{format(float(np.mean(xs)), fmt)} ± {format(float(np.std(xs, ddof=1)), fmt)}"


def _count_true(values: Iterable[Any]) -> str:
    flags = [v for v in values if isinstance(v, bool)]
    return f"{sum(flags)}/{len(flags)}" if flags else DASH


def _pct(sparsity: float) -> str:
    return f"{sparsity * 100:.4g}%"


def _title(data: ReportData, key: GroupKey) -> str:
    return data.group_title(*key)


def _table(**kwargs: Any) -> Table:
    from prunekit.bench.report.tables import Table

    return Table(**kwargs)


def _sort_key(row: ResultRow) -> tuple[Any, ...]:
    return (row.method == DENSE_METHOD, row.method, row.check != CLEAN_CHECK, row.check, row.sparsity)


# ---------------------------------------------------------------------------- errors
def error_table(data: ReportData) -> Table | None:
    """Instruments that failed on a cell (the cell's own result stands)."""
    found: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for row in data.rows:
        for name, entry in (row.instruments or {}).items():
            if isinstance(entry, dict) and "error" in entry:
                found[(name, str(entry["error"]).splitlines()[0][:160])].append(row)
    if not found:
        return None
    return _table(
        title="Instrument errors",
        columns=("instrument", "cells", "error", "e.g."),
        rows=tuple(
            (name, str(len(rows)), error, f"{rows[0].method} / {rows[0].check} at {_pct(rows[0].sparsity)}, seed {rows[0].seed}")
            for (name, error), rows in sorted(found.items())
        ),
        caption="An instrument that fails leaves its cell's accuracy and the other instruments' measurements as they are.",
    )


# ------------------------------------------------------------------------- instability
def _by_cell(items: Sequence[tuple[ResultRow, dict[str, Any]]]) -> dict[GroupKey, dict[tuple[str, str, float], list[tuple[ResultRow, dict[str, Any]]]]]:
    out: dict[GroupKey, dict[tuple[str, str, float], list[tuple[ResultRow, dict[str, Any]]]]] = defaultdict(lambda: defaultdict(list))
    for row, entry in sorted(items, key=lambda it: (_sort_key(it[0]), it[0].seed)):
        out[_group(row)][(row.method, row.check, row.sparsity)].append((row, entry))
    return out


def instability_tables(data: ReportData) -> list[Table]:
    """The error barrier between two copies of each ticket (and the rewinding sweep)."""
    items = measured(data.rows, "instability")
    tables = []
    for key, cells in _by_cell(items).items():
        threshold = next((_value(e, "threshold") for v in cells.values() for _, e in v if _value(e, "threshold")), 0.02)
        rows: list[tuple[str, ...]] = []
        for (method, check, sparsity), found in cells.items():
            entries = [e for _, e in found]
            rows.append((
                method, check, _pct(sparsity), str(len(found)),
                _mean_sd((_value(e, "barrier") for e in entries), POINTS),
                _count_true(_value(e, "stable") for e in entries),
                _mean_sd((_value(e, "error_a") for e in entries), POINTS),
                _mean_sd((_value(e, "error_b") for e in entries), POINTS),
            ))  # fmt: skip
        tables.append(_table(
            title=f"Instability — {_title(data, key)}",
            columns=("method", "check", "sparsity", "seeds", "error barrier (points)", "stable", "copy A error (%)", "copy B error (%)"),
            rows=tuple(rows),
            caption=(
                "Frankle et al. 2020: two copies of the ticket train with different SGD noise (copy A is the cell's "
                "own run); the test error is measured along the straight line between them, BatchNorm statistics "
                "recomputed at each point. Error barrier: the highest error on the path minus the mean of its ends. "
                f"Stable: barrier below {threshold * POINTS:g} points (seeds stable / seeds). Mean ± SD over seeds."
            ),
        ))  # fmt: skip
        sweep = [
            (cell, [(r, e) for r, e in found if "barrier_vs_rewind_step" in (e.get("curves") or {})])
            for cell, found in cells.items()
        ]
        sweep = [(cell, found) for cell, found in sweep if found]
        if sweep:
            steps = sorted({int(x) for _, found in sweep for _, e in found for x in e["curves"]["barrier_vs_rewind_step"]["x"]})
            rows = []
            for (method, check, sparsity), found in sweep:
                at: dict[int, list[Any]] = defaultdict(list)
                first = []
                for _, e in found:
                    curve = e["curves"]["barrier_vs_rewind_step"]
                    for x, y in zip(curve["x"], curve["y"]):
                        at[int(x)].append(y)
                    first.append(_value(e, "first_stable_step"))
                stable = _numbers(first)
                rows.append((
                    method, check, _pct(sparsity), str(len(found)),
                    *(_mean_sd(at.get(k, []), POINTS) for k in steps),
                    f"{int(np.median(stable))}" if stable else "none",
                ))  # fmt: skip
            tables.append(_table(
                title=f"Instability against the rewinding step — {_title(data, key)}",
                columns=("method", "check", "sparsity", "seeds", *(f"k={k}" for k in steps), "first stable k (median)"),
                rows=tuple(rows),
                caption=(
                    "The rewinding sweep of Frankle et al. 2020: two copies start from the dense run's weights at step "
                    "k under the cell's mask and train with different SGD noise; error barrier in points (mean ± SD "
                    "over seeds). The first stable k is where the barrier first falls below the threshold."
                ),
            ))  # fmt: skip
    return tables


# ------------------------------------------------------------------------ gradient flow
def gradient_flow_tables(data: ReportData) -> list[Table]:
    """Gradient norms at initialisation and early in training; distance and barrier to the
    pruning solution."""
    tables = []
    for key, cells in _by_cell(measured(data.rows, "gradient_flow")).items():
        rows = []
        for (method, check, sparsity), found in cells.items():
            entries = [e for _, e in found]

            def v(name: str, scale: float = 1.0, fmt: str = ".3g", entries: list[dict[str, Any]] = entries) -> str:
                return _mean_sd((_value(e, name) for e in entries), scale, fmt)

            rows.append((
                method, check, _pct(sparsity), str(len(found)),
                v("grad_norm_init"), v("grad_norm_init_dense"), v("grad_norm_init_ratio", fmt=".3f"),
                v("grad_norm_mean"), v("distance_start_to_solution"), v("distance_to_solution"),
                v("solution_barrier", POINTS, ".2f"), _count_true(_value(e, "same_basin") for e in entries),
            ))  # fmt: skip
        tables.append(_table(
            title=f"Gradient flow — {_title(data, key)}",
            columns=(
                "method", "check", "sparsity", "seeds", "‖g‖ at init", "‖g‖ dense at init", "sparse / dense",
                "mean ‖g‖, first steps", "distance to solution, start", "distance to solution, end",
                "barrier to solution (points)", "same basin",
            ),
            rows=tuple(rows),
            caption=(
                "Evci et al. 2022. ‖g‖: L2 norm of the loss gradient over the trainable parameters, pruned positions "
                "excluded; at init on a fixed probe of training images, for the ticket and for the same weights "
                "without the mask; then the minibatch gradient over the first steps of training (figure "
                "gradient_norm). Pruning solution: the dense run's trained weights under the mask; distances are L2 "
                "over the prunable weights, before and after training; barrier: the error barrier of the straight "
                "path from the trained ticket to the solution (same basin: below the threshold). Mean ± SD over seeds."
            ),
        ))  # fmt: skip
    return tables


# ----------------------------------------------------------------------- winning ticket
def _lr_runs(entries: Sequence[tuple[ResultRow, dict[str, Any]]]) -> dict[float, dict[str, dict[int, float]]]:
    """learning rate -> run ("ticket", "reinit", "random_mask") -> seed -> final accuracy (points)."""
    out: dict[float, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for row, entry in entries:
        curves = entry.get("curves") or {}
        for label in ("ticket", "reinit", "random_mask"):
            curve = curves.get(f"{label}_vs_lr")
            if not curve:
                continue
            for lr, acc in zip(curve["x"], curve["y"]):
                if acc is not None and math.isfinite(acc):
                    out[float(lr)][label][row.seed] = POINTS * float(acc)
    return out


def _paired(ticket: dict[int, float], baseline: dict[int, float], margin: float, alpha: float) -> PairedTest:
    seeds = sorted(set(ticket) & set(baseline))
    return paired_test([ticket[s] - baseline[s] for s in seeds], margin=margin, alpha=alpha)


def _delta_text(test: PairedTest) -> str:
    if test.mean is None:
        return DASH
    text = f"{test.mean:+.2f}"
    if test.ci_low is not None and test.ci_high is not None:
        text += f" [{test.ci_low:+.2f}, {test.ci_high:+.2f}]"
    return f"{text} {WINS[test.verdict]}"


def winning(vs_reinit: PairedTest, vs_random: PairedTest) -> str:
    """"yes" when the ticket beats both baselines, "no" when it ties or loses against either,
    "too few seeds" below :data:`~prunekit.bench.stats.MIN_SEEDS` paired seeds, else "undecided"."""
    verdicts = (vs_reinit.verdict, vs_random.verdict)
    if any(v in ("fails", "raises accuracy") for v in verdicts):
        return "no"
    if all(v == "passes" for v in verdicts):
        return "yes"
    if any(v == "too few seeds" for v in verdicts) or min(vs_reinit.n, vs_random.n) < MIN_SEEDS:
        return "too few seeds"
    return "undecided"


def _mean_text(values: dict[int, float]) -> str:
    return _mean_sd(values.values())


def winning_ticket_tables(data: ReportData) -> list[Table]:
    """Ma et al.'s criteria per (method, sparsity, learning rate), with paired tests."""
    margin, alpha = data.margin, data.level
    tables = []
    for key, cells in _by_cell(measured(data.rows, "winning_ticket")).items():
        rows = []
        for (method, _check, sparsity), found in cells.items():
            for lr, runs in sorted(_lr_runs(found).items()):
                ticket, reinit, random = runs.get("ticket", {}), runs.get("reinit", {}), runs.get("random_mask", {})
                vs_reinit = _paired(ticket, reinit, margin, alpha)
                vs_random = _paired(ticket, random, margin, alpha)
                rows.append((
                    method, _pct(sparsity), f"{lr:g}", str(len(ticket)),
                    _mean_text(ticket), _mean_text(reinit), _mean_text(random),
                    _delta_text(vs_reinit), _delta_text(vs_random), winning(vs_reinit, vs_random),
                ))  # fmt: skip
        tables.append(_table(
            title=f"Winning ticket? — {_title(data, key)}",
            columns=(
                "method", "sparsity", "learning rate", "seeds", "ticket (%)", "mask re-initialised (%)",
                "random mask, same layer ratios (%)", "ticket − re-initialised", "ticket − random mask", "winning ticket?",
            ),
            rows=tuple(rows),
            caption=(
                "Ma et al. 2021: a ticket wins only if it beats, under the same budget and learning rate, its mask on "
                "a random re-initialisation and a random mask with its layer ratios. Final accuracies, mean ± SD over "
                f"seeds; differences paired by seed (points) with their {1 - 2 * alpha:.0%} t interval: beats (above 0), "
                f"ties (within ±{margin:g} points), loses (below 0), each at error rate {alpha:g}; yes = beats both, "
                "no = ties or loses against either."
            ),
        ))  # fmt: skip
    return tables


def check_winning_table(data: ReportData) -> Table | None:
    """The same criteria read off the check cells, where a suite ran both ``reinit`` (surviving
    weights re-drawn) and ``layerwise_rearrange`` (random mask with the layer ratios)."""
    effects = {(e.protocol, e.model, e.dataset, e.method, e.sparsity, e.check): e for e in data.effects}
    rows = []
    for (protocol, model, dataset, method, sparsity, check), e in sorted(effects.items()):
        if check != REINIT_CHECK:
            continue
        other = effects.get((protocol, model, dataset, method, sparsity, RANDOM_MASK_CHECK))
        if other is None:
            continue
        tests = [PairedTest(n=x.n, mean=x.mean, sd=x.sd, ci_low=x.ci_low, ci_high=x.ci_high, p_lowers=x.p_lowers,
                            p_raises=x.p_raises, p_equivalent=x.p_equivalent, verdict=x.verdict, margin=x.margin,
                            alpha=x.alpha) for x in (e, other)]  # fmt: skip
        rows.append((
            data.group_title(protocol, model, dataset), method, _pct(sparsity), str(min(e.n, other.n)),
            _delta_text(tests[0]), _delta_text(tests[1]), winning(*tests),
        ))  # fmt: skip
    if not rows:
        return None
    return _table(
        title="Winning ticket? (from the reinit and layerwise_rearrange check cells)",
        columns=("models", "method", "sparsity", "seeds", "clean − reinit", "clean − layerwise_rearrange", "winning ticket?"),
        rows=tuple(rows),
        caption=(
            "Ma et al.'s criteria read off the suite's check cells at the suite's own learning rate (reinit re-draws "
            "the surviving weights only, where Ma et al. re-initialise the whole network; the winning_ticket "
            "instrument does the latter and sweeps the learning rate)."
        ),
    )


# ----------------------------------------------------------------------- mask stability
# prunekit.instruments is imported where its helpers are used: a report without masks loads no torch
def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    from prunekit.instruments import jaccard

    return jaccard(a, b)


@attrs.frozen(kw_only=True, eq=False)
class StoredMask:
    """One cell's mask as the ``mask_stability`` instrument stored it."""

    row: ResultRow
    layout: str  # names, shapes and sampled positions: masks compare only when theirs agree
    bits: np.ndarray
    exact: bool
    layers: tuple[tuple[str, int], ...]  # (name, size) of every prunable layer, when stored
    scores: tuple[str, np.ndarray] | None  # (its layout, the round-1 scores at the sampled positions)


def _stored(row: ResultRow, entry: dict[str, Any]) -> StoredMask | None:
    from prunekit.instruments import unpack_bits, unpack_floats

    d = entry.get("data") or {}
    if "mask" not in d:
        return None
    scores = (f"{d.get('layout')}:{d.get('score_positions')}", unpack_floats(d["scores"])) if "scores" in d else None
    return StoredMask(
        row=row, layout=f"{d.get('layout')}:{d.get('positions')}", bits=unpack_bits(d["mask"], int(d["positions"])),
        exact=bool(d.get("exact")), layers=tuple((str(n), int(k)) for n, k in d.get("layers", [])), scores=scores,
    )  # fmt: skip


def expected_random_jaccard(a: StoredMask, b: StoredMask) -> float | None:
    """The mean Jaccard of two independent random masks with the layer densities of ``a`` and
    ``b``: Σ pₗqₗNₗ / Σ (pₗ + qₗ − pₗqₗ)Nₗ over layers of Nₗ weights (d/(2−d) for one density d
    everywhere); from the overall densities of the stored bits when the layers are unknown."""
    pa, pb = a.row.layer_density, b.row.layer_density
    if a.layers and all(name in pa and name in pb for name, _ in a.layers):
        inter = sum(pa[n] * pb[n] * size for n, size in a.layers)
        union = sum((pa[n] + pb[n] - pa[n] * pb[n]) * size for n, size in a.layers)
    else:
        p, q = float(a.bits.mean()), float(b.bits.mean())
        inter, union = p * q, p + q - p * q
    return inter / union if union > 0 else None


def _pairs_mean(values: Sequence[float]) -> str:
    if not values:
        return DASH
    text = f"{np.mean(values):.3f}"
    return text + (f" ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else "")


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (scipy), non-finite scores left out; None when undefined."""
    from scipy import stats as scipy_stats

    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return None
    rho = float(scipy_stats.spearmanr(a[keep], b[keep]).statistic)
    return rho if math.isfinite(rho) else None


Cells = dict[tuple[str, str, float], dict[int, StoredMask]]  # (method, check, sparsity) -> seed -> mask


def _masks_by_cell(data: ReportData) -> dict[GroupKey, Cells]:
    out: dict[GroupKey, Cells] = defaultdict(lambda: defaultdict(dict))
    for row, entry in sorted(measured(data.rows, "mask_stability"), key=lambda it: (_sort_key(it[0]), it[0].seed)):
        mask = _stored(row, entry)
        if mask is not None:
            out[_group(row)][(row.method, row.check, row.sparsity)][row.seed] = mask
    return out


def _overlaps(a: dict[int, StoredMask], b: dict[int, StoredMask]) -> list[float]:
    """Jaccard of the masks of ``a`` and ``b`` at each seed both have (same layout)."""
    return [_jaccard(a[s].bits, b[s].bits) for s in sorted(set(a) & set(b)) if a[s].layout == b[s].layout]


def method_overlap(cells: Cells, sparsity: float) -> tuple[list[str], np.ndarray]:
    """Methods of the clean cells at ``sparsity`` and their mean Jaccard at the same seed
    (NaN where no seed is shared)."""
    methods = sorted(m for (m, c, s) in cells if c == CLEAN_CHECK and s == sparsity)
    grid = np.full((len(methods), len(methods)), np.nan)
    for i, a in enumerate(methods):
        for j, b in enumerate(methods):
            values = _overlaps(cells[(a, CLEAN_CHECK, sparsity)], cells[(b, CLEAN_CHECK, sparsity)])
            if values:
                grid[i, j] = float(np.mean(values))
    return methods, grid


def mask_stability_tables(data: ReportData) -> list[Table]:
    """Jaccard overlaps across seeds, checks and methods; Spearman of scores across seeds."""
    tables = []
    for key, cells in _masks_by_cell(data).items():
        exact = all(m.exact for seeds in cells.values() for m in seeds.values())
        how = "over every prunable position" if exact else "estimated on a seeded sample of positions (the same for every cell of a model)"
        rows = []
        for (method, check, sparsity), seeds in cells.items():
            pairs = [(seeds[a], seeds[b]) for a, b in itertools.combinations(sorted(seeds), 2) if seeds[a].layout == seeds[b].layout]
            overlaps = [_jaccard(a.bits, b.bits) for a, b in pairs]
            expected = _numbers(expected_random_jaccard(a, b) for a, b in pairs)
            rhos = _numbers(
                spearman(a.scores[1], b.scores[1])
                for a, b in pairs
                if a.scores is not None and b.scores is not None and a.scores[0] == b.scores[0]
            )
            rows.append((
                method, check, _pct(sparsity), str(len(seeds)), str(len(pairs)), _pairs_mean(overlaps),
                f"{np.mean(expected):.3f}" if expected else DASH, _pairs_mean(rhos),
            ))  # fmt: skip
        tables.append(_table(
            title=f"Mask stability across seeds — {_title(data, key)}",
            columns=(
                "method", "check", "sparsity", "seeds", "seed pairs", "Jaccard (min–max)",
                "random masks, same layer densities", "Spearman of scores",
            ),
            rows=tuple(rows),
            caption=(
                f"Jaccard overlap of the kept positions between the masks of two seeds ({how}), mean over seed pairs. "
                "Reference: the mean overlap of two independent random masks with the same per-layer densities "
                "(d/(2−d) for one density d everywhere); a method above it keeps the same positions more often than "
                "chance. Spearman: rank correlation of the method's round-1 scores at the same sampled positions "
                "across seeds (clean runs of scored methods). A mask that is a property of the network overlaps across "
                "seeds; one that is a property of the seed does not."
            ),
        ))  # fmt: skip
        checked = []
        for (method, check, sparsity), seeds in cells.items():
            clean = cells.get((method, CLEAN_CHECK, sparsity))
            if check == CLEAN_CHECK or clean is None:
                continue
            values = _overlaps(seeds, clean)
            if values:
                checked.append((method, check, _pct(sparsity), str(len(values)), _pairs_mean(values)))
        if checked:
            tables.append(_table(
                title=f"Mask overlap of each checked ticket with its clean ticket — {_title(data, key)}",
                columns=("method", "check", "sparsity", "seeds", "Jaccard with the clean ticket (min–max)"),
                rows=tuple(checked),
                caption="Same seed, same sparsity; 1 = the check left the mask as it was.",
            ))  # fmt: skip
        for sparsity in sorted({s for (_, c, s) in cells if c == CLEAN_CHECK}):
            methods, grid = method_overlap(cells, sparsity)
            if len(methods) < 2:
                continue
            tables.append(_table(
                title=f"Mask overlap between methods at {_pct(sparsity)} — {_title(data, key)}",
                columns=("method", *methods),
                rows=tuple((m, *(DASH if math.isnan(x) else f"{x:.3f}" for x in grid[i])) for i, m in enumerate(methods)),
                caption="Jaccard overlap of the clean masks of two methods at the same seed, mean over seeds (figure mask_overlap).",
            ))  # fmt: skip
    return tables


# ---------------------------------------------------------------------------- sections
def instrument_tables(data: ReportData) -> list[Table]:
    """Every instrument table, in report order (the W&B report run logs them too)."""
    return [table for _, tables in instrument_sections(data) for table in tables]


def instrument_sections(data: ReportData) -> list[tuple[str, list[Table]]]:
    """The report sections of the instruments that measured some row (none otherwise)."""
    out: list[tuple[str, list[Table]]] = []
    for title, tables in (
        ("Instability (linear mode connectivity)", instability_tables(data)),
        ("Gradient flow", gradient_flow_tables(data)),
        ("Winning ticket?", winning_ticket_tables(data) + [t for t in (check_winning_table(data),) if t is not None]),
        ("Mask stability", mask_stability_tables(data)),
    ):
        if tables:
            out.append((title, tables))
    errors = error_table(data)
    if errors is not None:
        out.append(("Instrument errors", [errors]))
    return out


# ------------------------------------------------------------------------------ figures
def _mean_curve(curves: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """The mean of several curves at each x (points measured by every curve)."""
    at: dict[float, list[float]] = defaultdict(list)
    for c in curves:
        for x, y in zip(c["x"], c["y"]):
            if y is not None and math.isfinite(y):
                at[float(x)].append(float(y))
    xs = sorted(x for x, ys in at.items() if len(ys) == len(curves))
    return xs, [float(np.mean(at[x])) for x in xs]


def _figure(name: str, title: str, caption: str, fig: Any) -> Figure:
    from prunekit.bench.report.plots import Figure, figure_files

    return Figure(name=name, title=title, caption=caption, files=figure_files(fig))


def plot_gradient_norm(data: ReportData) -> Figure | None:
    """Gradient norm over the first steps of training, one line per method (mean over the
    seeds of its clean runs), one panel per (protocol, model, dataset, sparsity); the dense
    network's as a dashed reference."""
    import matplotlib as mpl

    from prunekit.bench.report.plots import RC, panel_grid

    curves: dict[tuple[GroupKey, float, str], list[dict[str, Any]]] = defaultdict(list)
    for row, entry in measured(data.rows, "gradient_flow"):
        curve = (entry.get("curves") or {}).get("grad_norm")
        if curve and row.check == CLEAN_CHECK:
            curves[(_group(row), row.sparsity, row.method)].append(curve)
    panels = sorted({(g, s) for g, s, m in curves if m != DENSE_METHOD})
    if not panels:
        return None
    with mpl.rc_context(RC):
        fig, axes = panel_grid(len(panels), 2, 5.2, 3.4)
        for ax, (group, sparsity) in zip(axes, panels, strict=True):
            for (g, s, method), found in sorted(curves.items()):
                if g != group or (s != sparsity and method != DENSE_METHOD):
                    continue
                xs, ys = _mean_curve(found)
                style = {"color": "black", "linestyle": "--", "label": DENSE_METHOD} if method == DENSE_METHOD else {"label": method}
                ax.plot(xs, ys, linewidth=1.1, **style)
            ax.set_yscale("log")
            ax.set_title(f"{_title(data, group)}, {_pct(sparsity)} sparse")
            ax.set_xlabel("step of the final training")
            ax.set_ylabel("gradient norm (minibatch)")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
        return _figure(
            "gradient_norm", "Gradient norm early in training",
            "Evci et al. 2022: the L2 norm of the minibatch gradient (pruned positions excluded) at each step of the "
            "first epochs of training, mean over seeds of the clean runs; dashed: the dense network.",
            fig,
        )  # fmt: skip


def plot_instability(data: ReportData) -> Figure | None:
    """Test error along the linear path between the two copies (mean over seeds) per method,
    and the error barrier against the rewinding step where a sweep ran."""
    import matplotlib as mpl

    from prunekit.bench.report.plots import RC, panel_grid

    paths: dict[GroupKey, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    sweeps: dict[GroupKey, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row, entry in measured(data.rows, "instability"):
        label = row.method if row.method == DENSE_METHOD else f"{row.method} @ {_pct(row.sparsity)}"
        c = entry.get("curves") or {}
        if "error_path" in c:
            paths[_group(row)][label].append(c["error_path"])
        if "barrier_vs_rewind_step" in c:
            sweeps[_group(row)][label].append(c["barrier_vs_rewind_step"])
    panels = [("path", g) for g in sorted(paths)] + [("sweep", g) for g in sorted(sweeps)]
    if not panels:
        return None
    with mpl.rc_context(RC):
        fig, axes = panel_grid(len(panels), 2, 5.2, 3.4)
        for ax, (kind, group) in zip(axes, panels, strict=True):
            for label, found in sorted((paths if kind == "path" else sweeps)[group].items()):
                xs, ys = _mean_curve(found)
                ax.plot(xs, [POINTS * y for y in ys], marker="o", markersize=3, linewidth=1.1, label=label)
            if kind == "path":
                ax.set_xlabel("interpolation α (0: copy A, 1: copy B)")
                ax.set_ylabel("test error (%)")
                ax.set_title(f"Linear path — {_title(data, group)}")
            else:
                ax.axhline(2.0, color="black", linestyle=":", linewidth=1, label="2 points")
                ax.set_xlabel("rewinding step k")
                ax.set_ylabel("error barrier (points)")
                ax.set_title(f"Rewinding sweep — {_title(data, group)}")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
        return _figure(
            "instability", "Instability to SGD noise",
            "Frankle et al. 2020. Path panels: test error (%) along the straight line between two copies of each "
            "ticket trained with different SGD noise (BatchNorm recomputed at each point), mean over seeds. Sweep "
            "panels: the error barrier (points) against the rewinding step k; dotted: the 2-point stability threshold.",
            fig,
        )  # fmt: skip


def plot_winning_ticket(data: ReportData) -> Figure | None:
    """Final accuracy against the learning rate for the ticket and its two baselines."""
    import matplotlib as mpl

    from prunekit.bench.report.plots import RC, panel_grid

    panels = []
    for key, cells in _by_cell(measured(data.rows, "winning_ticket")).items():
        for (method, _check, sparsity), found in cells.items():
            runs = _lr_runs(found)
            if runs:
                panels.append((key, method, sparsity, runs))
    if not panels:
        return None
    labels = {"ticket": "ticket", "reinit": "mask re-initialised", "random_mask": "random mask, same ratios"}
    with mpl.rc_context(RC):
        fig, axes = panel_grid(len(panels), 3, 4.2, 3.2)
        for ax, (key, method, sparsity, runs) in zip(axes, panels, strict=True):
            rates = sorted(runs)
            for label, text in labels.items():
                xs, ys, lo, hi = [], [], [], []
                for lr in rates:
                    seeds = list(runs[lr].get(label, {}).values())
                    if seeds:
                        xs.append(lr)
                        ys.append(float(np.mean(seeds)))
                        lo.append(ys[-1] - min(seeds))
                        hi.append(max(seeds) - ys[-1])
                ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", markersize=3, capsize=2, linewidth=1.1, label=text)
            if len(rates) > 1:
                ax.set_xscale("log")
            ax.set_title(f"{method} @ {_pct(sparsity)} — {key[1]}")
            ax.set_xlabel("learning rate")
            ax.set_ylabel("final test accuracy (%)")
            ax.grid(alpha=0.3)
        axes[0].legend(frameon=False)
        return _figure(
            "winning_ticket_lr", "Winning ticket? against the learning rate",
            "Ma et al. 2021: final test accuracy (%) of the ticket, its mask re-initialised and a random mask with "
            "its layer ratios, trained under the same budget at each learning rate; mean over seeds, bars: the "
            "seeds' range.",
            fig,
        )  # fmt: skip


def plot_mask_overlap(data: ReportData) -> Figure | None:
    """Method × method heat map of the mean Jaccard overlap of clean masks at the same seed."""
    import matplotlib as mpl

    from prunekit.bench.report.plots import RC, panel_grid

    panels = []
    for key, cells in _masks_by_cell(data).items():
        for sparsity in sorted({s for (_, c, s) in cells if c == CLEAN_CHECK}):
            methods, grid = method_overlap(cells, sparsity)
            if len(methods) >= 2:
                panels.append((key, sparsity, methods, grid))
    if not panels:
        return None
    size = max(len(p[2]) for p in panels)
    with mpl.rc_context(RC):
        fig, axes = panel_grid(len(panels), 2, 0.55 * size + 2.8, 0.5 * size + 1.8)
        image = None
        for ax, (key, sparsity, methods, grid) in zip(axes, panels, strict=True):
            image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0)
            for i in range(len(methods)):
                for j in range(len(methods)):
                    if not math.isnan(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="black" if grid[i, j] > 0.6 else "white")  # fmt: skip
            ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right")
            ax.set_yticks(range(len(methods)), methods)
            ax.set_title(f"{_title(data, key)}, {_pct(sparsity)} sparse")
        fig.colorbar(image, ax=axes, label="Jaccard overlap of kept positions", shrink=0.9)
        return _figure(
            "mask_overlap", "Mask overlap between methods",
            "Jaccard overlap |A ∩ B| / |A ∪ B| of the kept positions of two methods' clean masks at the same seed, mean "
            "over seeds; two independent random masks of density d overlap by d/(2−d) on average.",
            fig,
        )  # fmt: skip


def instrument_figures(data: ReportData) -> list[Figure]:
    """The instruments' figures there is something to draw for."""
    return [f for f in (plot_gradient_norm(data), plot_instability(data), plot_winning_ticket(data), plot_mask_overlap(data)) if f is not None]


# ---------------------------------------------------------------------------------- W&B
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def wandb_summary(row: ResultRow) -> dict[str, Any]:
    """A cell's instrument numbers for its W&B run summary: ``instruments/<name>/<value>``
    (``instruments/<name>/error`` for an instrument that failed)."""
    out: dict[str, Any] = {}
    for name, entry in sorted((row.instruments or {}).items()):
        if not isinstance(entry, dict):
            continue
        if "error" in entry:
            out[f"instruments/{name}/error"] = str(entry["error"])
            continue
        for key, value in (entry.get("values") or {}).items():
            if value is not None:
                out[f"instruments/{name}/{key}"] = value
    return out


def wandb_tables(data: ReportData) -> dict[str, Table]:
    """The instrument tables by W&B key (``instruments/<title>``)."""
    return {f"instruments/{_slug(t.title)}": t for t in instrument_tables(data)}


__all__ = [
    "INSTRUMENT_PLOTS",
    "instrument_figures",
    "instrument_sections",
    "instrument_tables",
    "measured",
    "spearman",
    "wandb_summary",
    "wandb_tables",
    "winning",
]
