"""A report's figures, each as PNG (for screens and Markdown), SVG and PDF (for papers).

matplotlib draws on its Agg canvas without touching pyplot's global state. SVG keeps its text
as text (``svg.fonttype: none``) and PDF embeds TrueType fonts (``pdf.fonttype: 42``), as
journals ask; neither records a creation date, so the same rows give the same files. Units are
percent throughout (accuracy points; % of prunable weights).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from prunekit.bench.stats import MIN_SEEDS, Effect, Rank
from prunekit.sentinels import CLEAN_CHECK, DENSE_METHOD

from .data import ReportData
from .tables import VERDICT_MARKS, pct

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

FIGURE_FORMATS = ("png", "svg", "pdf")
PNG_DPI = 200
RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "prunekit",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
}
METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
GREY = "#d9d9d9"
DENSITY_TICKS = (0, 1, 2, 5, 10, 20, 50, 100)


@attrs.frozen(kw_only=True)
class Figure:
    """One figure: ``name`` (the files' stem), its caption, and its bytes per format."""

    name: str
    title: str
    caption: str
    files: dict[str, bytes]

    def file_name(self, fmt: str) -> str:
        return f"{self.name}.{fmt}"


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_files(fig: Any) -> dict[str, bytes]:
    """The figure rendered in every format of :data:`FIGURE_FORMATS`: ``{format: bytes}``."""
    out = {}
    for fmt in FIGURE_FORMATS:
        buf = io.BytesIO()
        fig.savefig(
            buf,
            format=fmt,
            dpi=PNG_DPI,
            metadata=METADATA[fmt],
            bbox_inches="tight",
            pad_inches=0.05,
        )
        out[fmt] = buf.getvalue()
    return out


def panel_grid(count: int, ncols: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A figure of ``count`` panels, ``ncols`` a row, each ``width`` × ``height`` inches."""
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    fig = _new_figure(width * ncols, height * nrows)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def method_colours(data: ReportData) -> dict[str, Any]:
    """One colour per method, the same in every figure (tab10, methods in name order)."""
    import matplotlib as mpl

    palette = mpl.colormaps["tab10"]
    methods = sorted({r.method for r in data.rows} - {DENSE_METHOD, data.reference_method})
    return {m: palette(i % palette.N) for i, m in enumerate(methods)}


# ---------------------------------------------------------------- accuracy vs sparsity
def _seed_ranges(data: ReportData) -> dict[tuple[str, str, str, str, float], tuple[float, float]]:
    """(protocol, model, dataset, method, sparsity) -> (min, max) final accuracy over the
    seeds of its clean done runs, in points."""
    values: dict[tuple[str, str, str, str, float], list[float]] = defaultdict(list)
    for r in data.rows:
        if (
            r.status == "done"
            and r.check == CLEAN_CHECK
            and r.final_accuracy is not None
            and math.isfinite(r.final_accuracy)
        ):
            values[(r.protocol, r.model, r.dataset, r.method, r.sparsity)].append(
                r.final_accuracy * 100
            )
    return {k: (min(v), max(v)) for k, v in values.items()}


def _band(r: Rank, ranges: dict[Any, tuple[float, float]], sparsity: float) -> tuple[float, float]:
    assert r.mean is not None
    if r.ci_low is not None and r.ci_high is not None:
        return max(r.ci_low, 0.0), min(r.ci_high, 100.0)
    return ranges.get((r.protocol, r.model, r.dataset, r.method, sparsity), (r.mean, r.mean))


def plot_accuracy_vs_sparsity(data: ReportData) -> Figure | None:
    """Mean clean final accuracy against sparsity, one line per method with a seed band and
    error bars; the dense network (dashed) and the random ticket (dotted) as references. One
    panel per (protocol, model, dataset)."""
    groups: dict[tuple[str, str, str], list[Rank]] = defaultdict(list)
    for r in data.ranks:
        if r.sparsity is not None and r.mean is not None:
            groups[(r.protocol, r.model, r.dataset)].append(r)
    groups = {k: v for k, v in groups.items() if any(not r.reference for r in v)}
    if not groups:
        return None
    ranges = _seed_ranges(data)
    import matplotlib as mpl

    with mpl.rc_context(RC):
        fig, axes = panel_grid(len(groups), 2, 5.6, 3.6)
        colour = method_colours(data)
        for ax, (key, ranks) in zip(axes, groups.items(), strict=True):
            by_method: dict[str, list[Rank]] = defaultdict(list)
            for r in ranks:
                by_method[r.method].append(r)
            sparsities = sorted(
                {r.sparsity for r in ranks if not r.reference and r.sparsity is not None}
            )
            for method in sorted(
                by_method, key=lambda m: (m in (DENSE_METHOD, data.reference_method), m)
            ):
                points = sorted(by_method[method], key=lambda r: r.sparsity or 0.0)
                if method == DENSE_METHOD:
                    ref = points[0]
                    assert ref.mean is not None
                    low, high = _band(ref, ranges, 0.0)
                    ax.axhline(
                        ref.mean,
                        color="black",
                        linestyle="--",
                        linewidth=1.2,
                        label="dense (reference)",
                    )
                    ax.axhspan(low, high, color="black", alpha=0.08, linewidth=0)
                    continue
                xs = [100 * (r.sparsity or 0.0) for r in points]
                ys = [math.nan if r.mean is None else float(r.mean) for r in points]  # never None in a board
                bands = [_band(r, ranges, r.sparsity or 0.0) for r in points]
                lows, highs = [b[0] for b in bands], [b[1] for b in bands]
                if method == data.reference_method:
                    style: dict[str, Any] = {
                        "color": "#444444",
                        "linestyle": ":",
                        "marker": "s",
                        "label": f"{data.reference_label} (reference)",
                    }
                else:
                    style = {
                        "color": colour.get(method, "C0"),
                        "linestyle": "-",
                        "marker": "o",
                        "label": method,
                    }
                ax.errorbar(
                    xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]],
                    capsize=3, linewidth=1.4, markersize=4, **style,
                )  # fmt: skip
                if len(xs) > 1:
                    ax.fill_between(xs, lows, highs, color=style["color"], alpha=0.15, linewidth=0)
            if len(sparsities) == 1:
                ax.set_xlim(100 * sparsities[0] - 5, 100 * sparsities[0] + 5)
            ax.set_xticks([100 * s for s in sparsities], [pct(s) for s in sparsities])
            ax.set_title(data.group_title(*key))
            ax.set_xlabel("sparsity (% of prunable weights removed)")
            ax.set_ylabel("test accuracy, final epoch (%)")
            ax.grid(alpha=0.3)
            ax.legend(
                loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False
            )
        files = figure_files(fig)
    return Figure(
        name="accuracy_vs_sparsity",
        title="Accuracy against sparsity",
        caption=(
            "Mean final test accuracy (%) of the clean runs against the asked sparsity (% of prunable weights "
            f"removed). Bands and error bars: the {data.confidence:.0%} t interval of the mean over seeds, cut to "
            f"[0, 100]; with fewer than {MIN_SEEDS} seeds or no seed variance, the range of the seeds. Dashed: the "
            f"dense network (its band shaded); dotted: the {data.reference_label}."
        ),
        files=files,
    )


# ------------------------------------------------------------------------ check effects
def plot_check_effects(data: ReportData) -> Figure | None:
    """Heat map of the mean effect (clean − with check, points): rows method @ sparsity,
    columns checks, one panel per (protocol, model, dataset); each cell marked by its verdict,
    with a legend of the marks and a labelled colour bar."""
    import matplotlib as mpl
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    groups: dict[tuple[str, str, str], list[Effect]] = defaultdict(list)
    for e in data.effects:
        groups[(e.protocol, e.model, e.dataset)].append(e)
    groups = {k: v for k, v in groups.items() if any(e.mean is not None for e in v)}
    if not groups:
        return None
    layouts = []
    for key, effects in groups.items():
        rows = sorted({(e.method, e.sparsity) for e in effects})
        cols = sorted({e.check for e in effects})
        layouts.append((key, effects, rows, cols))
    limit = max(
        [abs(e.mean) for g in groups.values() for e in g if e.mean is not None]
        + [2 * data.margin, 1.0]
    )
    with mpl.rc_context(RC):
        heights = [max(1.6, 0.32 * len(rows) + 1.2) for _, _, rows, _ in layouts]
        width = max(6.0, 1.1 * max(len(cols) for *_, cols in layouts) + 4.5)
        fig = _new_figure(width, sum(heights) + 0.9)
        axes = fig.subplots(len(layouts), 1, squeeze=False, height_ratios=heights).ravel()
        image = None
        for ax, (key, effects, rows, cols) in zip(axes, layouts, strict=True):
            grid = np.full((len(rows), len(cols)), np.nan)
            labels: dict[tuple[int, int], str] = {}
            for e in effects:
                i, j = rows.index((e.method, e.sparsity)), cols.index(e.check)
                if e.mean is not None:
                    grid[i, j] = e.mean
                shown = (
                    "" if e.mean is None else ("0.0 " if abs(e.mean) < 0.05 else f"{e.mean:+.1f} ")
                )
                labels[(i, j)] = shown + VERDICT_MARKS.get(e.verdict, "")
            ax.set_facecolor(GREY)  # not run / not applicable
            image = ax.imshow(
                np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto"
            )
            for (i, j), text in labels.items():
                dark = math.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.6 * limit
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
            ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
            ax.set_yticks(range(len(rows)), [f"{m} @ {pct(s)}" for m, s in rows])
            ax.set_title(data.group_title(*key))
            ax.tick_params(length=0)
        fig.colorbar(
            image, ax=list(axes), label="effect: clean − with check\n(accuracy points; > 0: the check lowers accuracy)",
            shrink=0.9, aspect=30,
        )  # fmt: skip
        marks: list[Any] = [
            Line2D(
                [],
                [],
                linestyle="none",
                marker=f"${VERDICT_MARKS[v]}$",
                markersize=8,
                color="black",
                label=v,
            )
            for v in ("passes", "fails", "raises accuracy", "inconclusive", "too few seeds")
        ]
        marks.append(Patch(facecolor=GREY, edgecolor="none", label="not run / not applicable"))
        fig.legend(
            handles=marks, loc="outside lower center", ncols=3, frameon=False, title="verdict marks"
        )
        files = figure_files(fig)
    return Figure(
        name="check_effects",
        title="Check effects",
        caption=(
            "Mean effect of each check (clean − with check, accuracy points, paired by seed) per method and "
            "sparsity; red: the check lowers accuracy, blue: it raises it. Marks: P passes, F fails, R raises "
            f"accuracy, ? inconclusive, <{MIN_SEEDS} too few seeds (at error rate {data.level:g}, margin "
            f"±{data.margin:g} points); grey: not run or not applicable."
        ),
        files=files,
    )


# ------------------------------------------------------------------------ layer density
def plot_layer_density(data: ReportData) -> Figure | None:
    """Per-layer density (% of weights kept) in module order, one line per method (mean over the
    seeds of its clean runs), one panel per (protocol, model, dataset, sparsity): the layer-wise
    profile plot of Su et al. 2020, with the overall density as a reference line."""
    import matplotlib as mpl

    profiles: dict[tuple[str, str, str, float], dict[str, list[dict[str, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in data.rows:
        if (
            r.status == "done"
            and r.check == CLEAN_CHECK
            and r.method != DENSE_METHOD
            and r.layer_density
        ):
            profiles[(r.protocol, r.model, r.dataset, r.sparsity)][r.method].append(
                dict(r.layer_density)
            )
    if not profiles:
        return None
    with mpl.rc_context(RC):
        fig, axes = panel_grid(len(profiles), 2, 5.6, 3.4)
        colour = method_colours(data)
        for ax, ((protocol, model, dataset, sparsity), methods) in zip(
            axes, sorted(profiles.items()), strict=True
        ):
            layers = list(next(iter(methods.values()))[0])
            for method in sorted(methods, key=lambda m: (m == data.reference_method, m)):
                runs = methods[method]
                ys = [
                    100 * sum(run.get(layer, math.nan) for run in runs) / len(runs)
                    for layer in layers
                ]
                style: dict[str, Any] = (
                    {"color": "#444444", "linestyle": ":", "marker": "s", "label": data.reference_label}
                    if method == data.reference_method
                    else {
                        "color": colour.get(method, "C0"),
                        "linestyle": "-",
                        "marker": "o",
                        "label": method,
                    }
                )
                ax.plot(range(1, len(layers) + 1), ys, linewidth=1.2, markersize=3, **style)
            ax.axhline(
                100 * (1 - sparsity),
                color="black",
                linestyle="--",
                linewidth=0.8,
                label="overall density",
            )
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(0, 100)
            ax.set_yticks(DENSITY_TICKS, [f"{t:g}" for t in DENSITY_TICKS])
            ax.minorticks_off()
            ax.set_ylabel("density (% of the layer's weights kept)")
            if len(layers) <= 24:
                ax.set_xticks(
                    range(1, len(layers) + 1),
                    [_short_layer(n) for n in layers],
                    rotation=90,
                    fontsize=7,
                )
                ax.set_xlabel("layer (module order)")
            else:
                ax.set_xlabel(f"layer index (module order, {len(layers)} layers)")
            ax.set_title(f"{data.group_title(protocol, model, dataset)}, sparsity {pct(sparsity)}")
            ax.grid(alpha=0.3)
            ax.legend(
                loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False
            )
        files = figure_files(fig)
    return Figure(
        name="layer_density",
        title="Per-layer density",
        caption=(
            "Fraction of each prunable layer's weights the masks keep (%, symmetric-log scale: linear below 1%), "
            "in module order, mean over the seeds of each method's clean runs; dashed: the overall density "
            "(100 − asked sparsity). A layer at 0 is pruned entirely."
        ),
        files=files,
    )


def _short_layer(name: str, limit: int = 22) -> str:
    name = name.removesuffix(".weight")
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


FIGURES: tuple[Callable[[ReportData], Figure | None], ...] = (
    plot_accuracy_vs_sparsity,
    plot_check_effects,
    plot_layer_density,
)


