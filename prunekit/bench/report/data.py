"""The numbers of a report, computed once from the rows (:func:`build_report`).

Besides the statistics of :mod:`prunekit.bench.stats` (reused as they are), a report states
what was run: the protocol of each fingerprint, read from the rows' ``spec``, ``identity`` and
``environment`` (:class:`ProtocolGroup`), the software that produced them (:class:`Software`),
and the achieved and effective sparsity beside the asked one (:func:`sparsity_achieved`).

Units: the rows hold accuracies and sparsities as fractions in [0, 1]; the statistics, and
every table and figure meant for people, are in percent (accuracy points). The machine
formats (``results.csv``, ``report.json``) hold fractions (:data:`UNITS`).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from prunekit.bench.published import Comparison, compare_published, published_numbers
from prunekit.bench.records import ResultRow
from prunekit.bench.stats import (
    ACCURACY_POINTS,
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DEFAULT_TOLERANCE,
    Effect,
    Granularity,
    Rank,
    SequentialDesign,
    VerdictSummary,
    accuracy_granularity,
    check_effects,
    ranking,
    verdict_matrix,
)
from prunekit.bench.suite import Suite, resolve_suite
from prunekit.defaults import ADAMW_OPTIMIZER, DEFAULT_OPTIMIZER, REFERENCE_METHOD, SGD_OPTIMIZER
from prunekit.errors import PrunekitError
from prunekit.sentinels import DENSE_METHOD

DASH = "–"
UNITS = {
    "people": "percent: accuracies in accuracy points (0–100), sparsities in % of prunable weights removed",
    "machine": "fractions in [0, 1]: accuracies of the test set, sparsities of the prunable weights; effects "
    "and differences are differences of such fractions",
}
PART_ORDER = ("model", "dataset", "method", "scorer", "schedule", "check", "trainer")


# ------------------------------------------------------------------------ status and failures
def first_line(error: str | None, limit: int = 160) -> str:
    line = next((ln.strip() for ln in (error or "").splitlines() if ln.strip()), "no error message")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failure_summary(rows: Iterable[ResultRow]) -> list[tuple[str, list[ResultRow]]]:
    """Failed cells grouped by the first line of their error, most frequent first."""
    groups: dict[str, list[ResultRow]] = defaultdict(list)
    for row in rows:
        if row.status == "failed":
            groups[first_line(row.error)].append(row)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def status_line(rows: Sequence[ResultRow]) -> str:
    """One line: how many cells are done, failed (with their errors), not applicable, running."""
    counts: Counter[str] = Counter(r.status for r in rows)
    total = len(rows)
    if counts["failed"]:
        groups = failure_summary(rows)
        errors = "; ".join(f"{len(group)} × {msg}" for msg, group in groups[:3])
        more = len(groups) - 3
        line = f"{counts['failed']} of {total} cells failed: {errors}" + (
            f"; and {more} other errors" if more > 0 else ""
        )
    else:
        line = f"no cell failed ({counts['done']} of {total} done)"
    extras = [
        f"{counts[s]} {label}"
        for s, label in (
            ("not_applicable", "not applicable"),
            ("running", "still running or interrupted"),
            ("diverged", "diverged (training stopped: loss or weights not finite; not ranked)"),
            ("stale", "stale (stored by other code, options or plugin versions; not used)"),
        )
        if counts[s]
    ]
    return line + (f"; {', '.join(extras)}" if extras else "")


# ------------------------------------------------------------------------------ protocol
@attrs.frozen(kw_only=True)
class ProtocolGroup:
    """What the rows of one protocol fingerprint ran: ``settings`` as (setting, value) pairs in
    reading order, for people (percent). ``label`` ("A", "B", …) names the protocol in titles
    when a report holds several; "" when it holds one."""

    fingerprint: str
    label: str
    settings: tuple[tuple[str, str], ...]
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "label": self.label,
            "rows": self.rows,
            "settings": dict(self.settings),
        }


def _g(x: float) -> str:
    return f"{x:g}"


def _pct_list(values: Iterable[float]) -> str:
    return ", ".join(f"{v * 100:.4g}%" for v in sorted(set(values)))


def _seed_text(rows: Sequence[ResultRow]) -> str:
    seeds = sorted({r.seed for r in rows})
    per_cell: dict[tuple[Any, ...], set[int]] = defaultdict(set)
    for r in rows:
        per_cell[(r.model, r.dataset, r.method, r.check, r.sparsity)].add(r.seed)
    counts = sorted({len(v) for v in per_cell.values()})
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 3:
        listed = f"{seeds[0]}–{seeds[-1]}"
    else:
        listed = ", ".join(str(s) for s in seeds)
    if not counts:
        return listed
    per = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"{listed} ({per} per cell)"


def _options_text(options: Any) -> str:
    """Stored options (a mapping, or canonical ``[[key, value], ...]`` pairs) as ``k=v, …``."""
    if isinstance(options, list) and all(isinstance(p, list) and len(p) == 2 for p in options):
        options = {str(k): v for k, v in options}
    if not isinstance(options, Mapping) or not options:
        return ""
    return ", ".join(f"{k}={_options_text(v) or v}" for k, v in sorted(options.items()))


def train_config(protocol: Mapping[str, Any]) -> dict[str, Any]:
    """A stored protocol with every field resolved (fields left out at their defaults filled in
    from today's :class:`~prunekit.interfaces.TrainConfig`); as stored when that fails."""
    try:
        from prunekit.interfaces import TrainConfig

        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in protocol.items()}
        config = TrainConfig(**fields)
        return attrs.asdict(config)
    except (TypeError, ValueError):
        return dict(protocol)


def _optimiser_text(p: Mapping[str, Any]) -> str:
    name = str(p.get("optimizer", DEFAULT_OPTIMIZER))
    wd = p.get("weight_decay")
    decay = f", weight decay {_g(wd)}" if wd is not None else ""
    if name == SGD_OPTIMIZER:
        nesterov = ", Nesterov" if p.get("nesterov") else ""
        return f"SGD, momentum {_g(p.get('momentum', 0.0))}{nesterov}{decay}"
    if name == ADAMW_OPTIMIZER:
        betas = ", ".join(_g(b) for b in p.get("betas", ()))
        return f"AdamW, betas ({betas}), decoupled{decay}"
    return name + decay


def _schedule_text(p: Mapping[str, Any]) -> str:
    kind = str(p.get("lr_schedule", ""))
    if kind == "multistep":
        steps = ", ".join(f"{float(m) * 100:.4g}%" for m in p.get("milestones", ()))
        text = f"step decay ×{_g(p.get('gamma', 0.1))} at {steps} of the epochs"
    elif kind == "cosine":
        text = "cosine annealing to 0"
    else:
        text = kind or DASH
    warm = p.get("warmup_epochs") or 0
    return text + (f", after {warm} linear warm-up epoch{'s' if warm != 1 else ''}" if warm else "")


def _augment_text(envs: Sequence[Mapping[str, Any]]) -> str:
    recorded = {
        repr(e["augmentation"]): e["augmentation"]
        for e in envs
        if isinstance(e.get("augmentation"), Mapping)
    }
    if not recorded:
        return "not recorded with these rows (stored before prunekit recorded it)"
    texts = []
    for aug in recorded.values():
        parts = []
        if aug.get("crop_padding"):
            parts.append(f"random crop after {aug['crop_padding']}-pixel zero padding")
        if aug.get("hflip"):
            parts.append("random horizontal flip")
        texts.append(" + ".join(parts) if parts else "none")
    return "; ".join(sorted(set(texts)))


def _values(rows: Sequence[ResultRow], get: Any) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        value = get(r)
        if value not in (None, ""):
            seen[str(value)] = None
    return list(seen)


def _joined(values: Sequence[str], missing: str = "not recorded") -> str:
    return ", ".join(values) if values else missing


def _model_text(r: ResultRow) -> str:
    options = _options_text(r.spec.get("model_options")) if r.spec else ""
    return r.model + (f" ({options})" if options else "")


def _dataset_text(r: ResultRow) -> str:
    options = _options_text(r.spec.get("dataset_options")) if r.spec else ""
    return r.dataset + (f" ({options})" if options else "")


def _sizes(r: ResultRow) -> str | None:
    train, test = r.environment.get("train_size"), r.environment.get("test_size")
    if train is None and test is None:
        return None
    return f"{r.dataset}: {train if train is not None else '?'} training, {test if test is not None else '?'} test images"


def _device(r: ResultRow) -> str | None:
    device, name = r.environment.get("device"), r.environment.get("device_name")
    if not device:
        return None
    return f"{device} ({name})" if name else str(device)


def protocol_groups(
    rows: Sequence[ResultRow], *, margin: float, alpha: float, design: SequentialDesign | None
) -> tuple[ProtocolGroup, ...]:
    """One :class:`ProtocolGroup` per protocol fingerprint (stale rows only when nothing else)."""
    current = [r for r in rows if r.status != "stale"] or list(rows)
    by_fp: dict[str, list[ResultRow]] = defaultdict(list)
    for r in current:
        by_fp[r.protocol].append(r)
    several = len(by_fp) > 1
    groups = []
    for index, (fingerprint, members) in enumerate(sorted(by_fp.items())):
        ran = [r for r in members if r.status != "not_applicable"] or members
        specs = [r.spec.get("protocol") or r.identity.get("protocol") for r in ran]
        recorded = [p for p in specs if isinstance(p, Mapping)]
        configs = {repr(sorted(train_config(p).items())): train_config(p) for p in recorded}
        settings: list[tuple[str, str]] = [
            ("models", _joined(_values(ran, _model_text))),
            ("data", _joined(_values(ran, _dataset_text))),
            ("images", _joined(_values(ran, _sizes))),
            ("training augmentation", _augment_text([r.environment for r in ran])),
        ]
        if not configs:
            settings.append(
                (
                    "training",
                    "not recorded with these rows (stored before prunekit recorded the cell spec)",
                )
            )
        for config in configs.values():
            tag = "" if len(configs) == 1 else " (rows differ)"
            settings += [
                (
                    f"trainer{tag}",
                    _joined(_values(ran, lambda r: r.spec.get("trainer") if r.spec else None)),
                ),
                (f"epochs{tag}", str(config.get("epochs", DASH))),
                (f"batch size{tag}", str(config.get("batch_size", DASH))),
                (f"optimiser{tag}", _optimiser_text(config)),
                (f"learning rate{tag}", _g(config["lr"]) if "lr" in config else DASH),
                (f"learning-rate schedule{tag}", _schedule_text(config)),
                (f"precision{tag}", str(config.get("precision", "fp32"))),
            ]
            if config.get("grad_clip_norm"):
                settings.append(
                    (f"gradient clipping{tag}", f"global norm {_g(config['grad_clip_norm'])}")
                )
            if (config.get("accumulation_steps") or 1) > 1:
                settings.append(
                    (
                        f"gradient accumulation{tag}",
                        f"{config['accumulation_steps']} micro-batches per step",
                    )
                )
        settings += [
            ("methods", _joined(sorted({r.method for r in ran}))),
            ("checks", _joined(sorted({r.check for r in ran}))),
            ("sparsities asked", _pct_list(r.sparsity for r in ran if r.method != DENSE_METHOD) or DASH),
            ("seeds", _seed_text([r for r in ran if r.status == "done"] or ran)),
            (
                "verdicts",
                design.describe()
                if design is not None
                else f"equivalence margin ±{margin:g} accuracy points; error rate {alpha:g} per verdict",
            ),
            ("device", _joined(_values(ran, _device))),
            ("protocol fingerprint", f"{fingerprint[:12]}¹"),
        ]
        groups.append(
            ProtocolGroup(
                fingerprint=fingerprint,
                label=chr(ord("A") + index)
                if several and index < 26
                else (str(index + 1) if several else ""),
                settings=tuple(settings),
                rows=len(members),
            )
        )
    return tuple(groups)


# ------------------------------------------------------------------------------ software
@attrs.frozen(kw_only=True)
class Software:
    """One component and its version(s) across the rows, and what it provided."""

    component: str
    version: str
    provides: str

    def as_dict(self) -> dict[str, str]:
        return attrs.asdict(self)


_ORIGIN = re.compile(r"^(?P<name>\S+)\s+(?P<version>\S+)(?:\s+\((?P<detail>.*)\))?$")


def software_versions(rows: Sequence[ResultRow]) -> tuple[Software, ...]:
    """The core libraries (from the rows' environment), then each plugin that provided a part
    of a recipe (from the identities' origins), with every version the rows saw."""
    current = [r for r in rows if r.status != "stale"] or list(rows)
    versions: dict[str, dict[str, None]] = defaultdict(dict)
    provides: dict[str, dict[str, None]] = defaultdict(dict)
    for r in current:
        env = r.environment
        for lib in ("prunekit", "torch", "timm", "python", "cuda"):
            if env.get(lib):
                versions[lib][str(env[lib])] = None
                provides[lib]["core" if lib == "prunekit" else "runtime"] = None
        for part in PART_ORDER:
            entry = r.identity.get(part)
            if not isinstance(entry, Mapping) or not isinstance(entry.get("origin"), str):
                continue
            match = _ORIGIN.match(entry["origin"])
            if match is None:
                continue
            component = match["detail"] or match["name"]
            versions[component][match["version"]] = None
            name = entry.get("name") or (entry.get("recipe") or {}).get("name") or ""
            provides[component][f"{part} {name}".strip()] = None
    out = []
    core = ("prunekit", "torch", "timm", "python", "cuda")
    for component in [c for c in core if c in versions] + sorted(
        c for c in versions if c not in core
    ):
        seen = list(versions[component])
        text = seen[0] if len(seen) == 1 else ", ".join(seen) + " (rows differ)"
        out.append(
            Software(component=component, version=text, provides=", ".join(provides[component]))
        )
    return tuple(out)


# -------------------------------------------------------------------- achieved sparsity
@attrs.frozen(kw_only=True)
class Achieved:
    """Achieved and effective sparsity (fractions) over the seeds of one cell group."""

    achieved: tuple[float, ...]
    effective: tuple[float, ...]
    effective_missing: int  # seeds with no effective sparsity (not computed for this model)


CellGroup = tuple[
    str, str, str, str, str, float
]  # protocol, model, dataset, method, check, sparsity


def sparsity_achieved(rows: Iterable[ResultRow]) -> dict[CellGroup, Achieved]:
    """Per (protocol, model, dataset, method, check, sparsity): the done rows' achieved and
    effective sparsities."""
    achieved: dict[CellGroup, list[float]] = defaultdict(list)
    effective: dict[CellGroup, list[float]] = defaultdict(list)
    missing: Counter[CellGroup] = Counter()
    for r in rows:
        if r.status != "done":
            continue
        key = (r.protocol, r.model, r.dataset, r.method, r.check, r.sparsity)
        if r.achieved_sparsity is not None and math.isfinite(r.achieved_sparsity):
            achieved[key].append(r.achieved_sparsity)
        if r.effective_sparsity is not None and math.isfinite(r.effective_sparsity):
            effective[key].append(r.effective_sparsity)
        else:
            missing[key] += 1
    keys = set(achieved) | set(effective) | set(missing)
    return {
        k: Achieved(
            achieved=tuple(achieved[k]), effective=tuple(effective[k]), effective_missing=missing[k]
        )
        for k in keys
    }


def range_text(values: Sequence[float], digits: int = 2) -> str:
    """Fractions as percent: one value, or "low–high" when the seeds differ."""
    if not values:
        return DASH
    low, high = min(values) * 100, max(values) * 100
    if f"{low:.{digits}f}" == f"{high:.{digits}f}":
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f}–{high:.{digits}f}"


# ------------------------------------------------------------------------------ clipping
def clip(
    lo: float | None, hi: float | None, bounds: tuple[float, float]
) -> tuple[float | None, float | None, bool]:
    """An interval cut to ``bounds``; whether it was cut."""
    if lo is None or hi is None:
        return lo, hi, False
    low, high = max(lo, bounds[0]), min(hi, bounds[1])
    return low, high, (low, high) != (lo, hi)


def effect_bounds(e: Effect) -> tuple[float, float]:
    """Where an effect (clean − with check, points) can lie: each seed's difference lies in
    [clean − 100, clean], so their mean lies in [mean clean − 100, mean clean]."""
    if e.clean_mean is None:
        return (-ACCURACY_POINTS, ACCURACY_POINTS)
    return (e.clean_mean - ACCURACY_POINTS, e.clean_mean)


DELTA_BOUNDS = (-ACCURACY_POINTS, ACCURACY_POINTS)
ACCURACY_BOUNDS = (0.0, ACCURACY_POINTS)


# ------------------------------------------------------------------------ the computation
@attrs.frozen(kw_only=True)
class ReportData:
    """Every number a report shows, computed once from the rows."""

    rows: tuple[ResultRow, ...]
    ranks: tuple[Rank, ...]
    effects: tuple[Effect, ...]
    verdicts: tuple[VerdictSummary, ...]
    published: tuple[Comparison, ...]
    tolerance: float
    confidence: float
    n_boot: int
    seed: int
    alpha: float = DEFAULT_ALPHA
    design: SequentialDesign | None = None  # verdicts of the sequential rule (--until-decided)
    granularity: tuple[Granularity, ...] = ()
    protocols: tuple[ProtocolGroup, ...] = ()
    software: tuple[Software, ...] = ()
    achieved: dict[CellGroup, Achieved] = attrs.field(factory=dict)
    reference_method: str = REFERENCE_METHOD  # the leaderboards' Δ is against it (the suite's)

    @property
    def reference_label(self) -> str:
        """The reference method in words, e.g. "random ticket"."""
        return self.reference_method.replace("_", " ")

    @property
    def margin(self) -> float:
        """The equivalence margin the verdicts used (points)."""
        return self.tolerance if self.design is None else self.design.margin

    @property
    def level(self) -> float:
        """Each verdict's error rate."""
        return self.alpha if self.design is None else self.design.alpha

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.status for r in self.rows).items()))

    def protocol_label(self, fingerprint: str) -> str:
        return next((g.label for g in self.protocols if g.fingerprint == fingerprint), "")

    def group_title(self, protocol: str, model: str, dataset: str) -> str:
        """E.g. "resnet20 on cifar10", with "(protocol B)" when the report holds several."""
        label = self.protocol_label(protocol)
        return f"{model} on {dataset}" + (f" (protocol {label})" if label else "")

    def diverged(self) -> dict[str, tuple[int, int]]:
        """Per method: (diverged cells, cells that trained: done + diverged + failed)."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in self.rows:
            if r.status in ("done", "diverged", "failed"):
                counts[r.method][1] += 1
                if r.status == "diverged":
                    counts[r.method][0] += 1
        return {m: (d, n) for m, (d, n) in sorted(counts.items()) if d}


def suites_of(rows: Sequence[ResultRow], suites: Sequence[Suite] = ()) -> list[Suite]:
    """The suites the rows come from: ``suites`` (e.g. the one a bench just ran, which may be a
    file), then each other suite the rows name that still resolves (installed, or a file)."""
    out = list(suites)
    known = {s.name for s in out}
    for name in sorted({r.suite for r in rows} - known):
        try:
            out.append(resolve_suite(name))
        except PrunekitError:
            continue  # a suite that no longer resolves: its rows are read with the defaults
    return out


def reference_method_of(suites: Sequence[Suite]) -> str:
    """The one reference method of ``suites`` (their ``reference_method``; the built-in
    default without any); an error when they name different ones."""
    named = {s.name: s.reference_method for s in suites}
    methods = sorted(set(named.values()))
    if len(methods) > 1:
        listed = ", ".join(f"{name} ({method})" for name, method in sorted(named.items()))
        raise PrunekitError(
            f"the suites of these results rank against different reference methods: {listed}; "
            "report one suite at a time (--suite)"
        )
    return methods[0] if methods else REFERENCE_METHOD


def build_report(
    rows: Iterable[ResultRow],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    design: SequentialDesign | None = None,
    suites: Sequence[Suite] = (),
) -> ReportData:
    """``tolerance`` is the equivalence margin (points), ``alpha`` each verdict's error rate,
    ``confidence`` the leaderboard intervals' level; ``design``: verdicts by the sequential rule.
    The rows' suites (``suites``, then those the rows name: :func:`suites_of`) give the
    leaderboards' reference method and the published numbers, with those of every installed
    suite after them."""
    rows = tuple(rows)
    known = suites_of(rows, suites)
    reference = reference_method_of(known)
    effects = check_effects(rows, margin=tolerance, alpha=alpha, design=design)
    margin = tolerance if design is None else design.margin
    return ReportData(
        rows=rows,
        ranks=tuple(ranking(rows, n_boot=n_boot, seed=seed, confidence=confidence, reference_method=reference)),
        effects=tuple(effects),
        verdicts=tuple(verdict_matrix(effects)),
        published=tuple(compare_published(rows, published_numbers(known))),
        tolerance=tolerance,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        design=design,
        granularity=tuple(accuracy_granularity(rows)),
        protocols=protocol_groups(
            rows, margin=margin, alpha=alpha if design is None else design.alpha, design=design
        ),
        software=software_versions(rows),
        achieved=sparsity_achieved(rows),
        reference_method=reference,
    )
