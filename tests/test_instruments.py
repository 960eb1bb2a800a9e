"""Instruments: the helpers' known answers, the built-in instruments in a bench, the report.

Golden values come from definitions computed here independently of the code under test: a
softmax regression's gradient written out by hand, the expected Jaccard overlap of independent
random masks (d / (2 − d)), paired differences built with a known sign.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch
from torch import nn

from prunekit.bench.grid import expand
from prunekit.bench.instrument_report import (
    instrument_figures,
    instrument_sections,
    spearman,
    wandb_summary,
    winning,
)
from prunekit.bench.records import ResultRow
from prunekit.bench.runner import run_bench, spec_from_payload, stale_reason
from prunekit.bench.stats import paired_test
from prunekit.bench.store import ResultStore
from prunekit.bench.suite import suite_from_mapping
from prunekit.cell import CellSpec, run_cell
from prunekit.cell_identity import cell_identity
from prunekit.data import ArrayData, DataBundle
from prunekit.errors import PrunekitError
from prunekit.instruments import (
    InstrumentContext,
    error_barrier,
    error_path,
    gradient_norm,
    interpolation_barrier,
    jaccard,
    pack_bits,
    pack_floats,
    state_of,
    step_gradient_norms,
    unpack_bits,
    unpack_floats,
)
from prunekit.interfaces import TrainConfig
from prunekit.masks import Masks
from prunekit.pipeline import build_model, load_dataset
from prunekit_plugins.sgd import SGDTrainer

CPU = torch.device("cpu")
ALL = ("gradient_flow", "instability", "mask_stability", "winning_ticket")


def _context(model: nn.Module, data: DataBundle, masks: Masks, protocol: TrainConfig, seed: int = 0) -> InstrumentContext:
    """An instrument context for helpers that need only a model, data, a trainer and a protocol."""
    spec = CellSpec(model="digits_cnn", dataset="digits", method="snip", sparsity=0.5, seed=seed, protocol=protocol)
    return InstrumentContext(
        name="test", spec=spec, method=None, model=model, masks=masks, data=data,  # type: ignore[arg-type]
        trainer=SGDTrainer(), protocol=protocol, seed=seed, device=CPU, start_step=0,
        ticket=state_of(model), unpruned={}, build=None, dense=None,  # type: ignore[arg-type]
    )  # fmt: skip


def _blobs(n: int = 96, classes: int = 3, seed: int = 0) -> DataBundle:
    """A tiny 1×4×4 dataset, no augmentation."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.randint(0, classes, (n,), generator=g)
    return DataBundle(name="blobs", train=ArrayData(x=x, y=y), test=ArrayData(x=x[:32], y=y[:32]), num_classes=classes, mean=(0.5,), std=(0.25,))


# ------------------------------------------------------------------------ linear paths
def test_identical_copies_have_zero_barrier() -> None:
    """The path between a network and itself has the same error everywhere: barrier exactly 0
    (BatchNorm statistics are recomputed at every point from the same images)."""
    data = load_dataset("digits")
    model = build_model("digits_cnn", data, 0)
    protocol = TrainConfig(epochs=1, batch_size=64, lr=0.05, lr_schedule="constant", milestones=())
    ctx = _context(model, data, Masks({}), protocol)
    state = state_of(model)
    alphas, errors = error_path(ctx, state, {k: v.clone() for k, v in state.items()}, points=3, bn_samples=256)
    assert alphas == [0.0, 0.5, 1.0]
    assert len(set(errors)) == 1
    assert error_barrier(errors) == 0.0


def test_unrelated_networks_have_a_large_barrier() -> None:
    """Two CNNs trained from unrelated initialisations (and data orders) are not linearly
    connected: the midpoint's error is far above the ends' (the barrier exceeds 20 points)."""
    data = load_dataset("digits")
    protocol = TrainConfig(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4, lr_schedule="cosine", milestones=())
    trained = []
    for seed in (0, 1):
        model = build_model("digits_cnn", data, seed)
        result = SGDTrainer().fit(model, data, protocol, seed=seed)
        assert result.final_accuracy > 0.8
        trained.append(state_of(model))
    ctx = _context(build_model("digits_cnn", data, 0), data, Masks({}), protocol)
    _, errors = error_path(ctx, trained[0], trained[1], points=3, bn_samples=512)
    assert max(errors[0], errors[-1]) < 0.2
    assert error_barrier(errors) > 0.2


def test_error_barrier_definitions() -> None:
    """Frankle et al.'s barrier is the highest error minus the mean of the two ends; the
    interpolation barrier is the highest error above the straight line between the ends, so a
    path that falls linearly from a bad end to a good one has none."""
    assert error_barrier([0.1, 0.5, 0.3]) == pytest.approx(0.5 - 0.2)
    assert error_barrier([0.1, 0.1]) == 0.0
    assert interpolation_barrier([0.0, 0.5, 1.0], [0.1, 0.5, 0.3]) == pytest.approx(0.5 - 0.2)
    assert error_barrier([0.1, 0.3, 0.5]) == pytest.approx(0.2)
    assert interpolation_barrier([0.0, 0.5, 1.0], [0.1, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-12)
    assert interpolation_barrier([0.0, 0.25, 1.0], [0.1, 0.4, 0.5]) == pytest.approx(0.4 - 0.2)


# ------------------------------------------------------------------------ gradient norms
def _softmax_regression_grad(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d(mean cross-entropy)/d(W, b) of logits = x Wᵀ + b, written out: (P − Y)ᵀ x / N."""
    logits = x @ w.T + b
    p = torch.softmax(logits, dim=1)
    onehot = torch.zeros_like(p)
    onehot[torch.arange(len(y)), y] = 1.0
    return (p - onehot).T @ x / len(y), (p - onehot).mean(0)


def _linear_model(classes: int) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, classes))


def test_gradient_norm_matches_a_hand_computation() -> None:
    """gradient_norm of a softmax regression equals √(‖(P − Y)ᵀx/N ⊙ m‖² + ‖mean(P − Y)‖²)
    computed by hand, pruned positions excluded, over several batches."""
    data = _blobs()
    model = _linear_model(data.num_classes).double()
    mask = torch.rand(data.num_classes, 16, generator=torch.Generator().manual_seed(1)) < 0.4
    masks = Masks({"1.weight": mask})
    x = data.normalize(data.train.x).double()
    batches = [(x[:50], data.train.y[:50]), (x[50:], data.train.y[50:])]
    w, b = model[1].weight.detach(), model[1].bias.detach()
    gw, gb = _softmax_regression_grad(w, b, x.flatten(1), data.train.y)
    expected = math.sqrt(float((gw * mask).pow(2).sum() + gb.pow(2).sum()))
    assert gradient_norm(model, batches, masks) == pytest.approx(expected, rel=1e-9)
    unmasked = math.sqrt(float(gw.pow(2).sum() + gb.pow(2).sum()))
    assert gradient_norm(model, batches) == pytest.approx(unmasked, rel=1e-9)


def test_step_gradient_norms_follow_training_by_hand() -> None:
    """The gradient norms seen at the optimizer's first two steps (full-batch SGD, no momentum,
    no weight decay, masks enforced) equal those of two gradient steps done by hand (in float64;
    the trainer runs in float32)."""
    data = _blobs()
    model = _linear_model(data.num_classes)
    mask = torch.rand(data.num_classes, 16, generator=torch.Generator().manual_seed(2)) < 0.5
    masks = Masks({"1.weight": mask})
    masks.apply(model)
    lr = 0.5
    protocol = TrainConfig(epochs=3, batch_size=len(data.train), lr=lr, momentum=0.0, weight_decay=0.0, lr_schedule="constant", milestones=())
    ctx = _context(model, data, masks, protocol)
    norms, note = step_gradient_norms(ctx, state_of(model), steps=2)
    assert note is None and len(norms) == 2
    x = data.normalize(data.train.x).double().flatten(1)
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    expected = []
    for _ in range(2):
        gw, gb = _softmax_regression_grad(w, b, x, data.train.y)
        expected.append(math.sqrt(float((gw * mask).pow(2).sum() + gb.pow(2).sum())))
        w, b = (w - lr * gw) * mask, b - lr * gb
    assert norms == pytest.approx(expected, rel=1e-5)
    assert torch.equal(model[1].weight, ctx.ticket["1.weight"])  # the cell's model is untouched


# -------------------------------------------------------------------------- mask overlap
def test_jaccard_of_a_mask_with_itself_is_one() -> None:
    """A mask overlaps itself fully; disjoint masks not at all."""
    mask = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.1
    assert jaccard(mask, mask) == 1.0
    assert jaccard(mask, ~mask) == 0.0


@pytest.mark.parametrize("density", [0.05, 0.1, 0.5])
def test_jaccard_of_independent_random_masks(density: float) -> None:
    """Two independent random masks of density d share d² of the positions and cover
    2d − d², so their Jaccard is d / (2 − d) (within 0.01 on 200,000 positions)."""
    g = torch.Generator().manual_seed(7)
    a = torch.rand(200_000, generator=g) < density
    b = torch.rand(200_000, generator=g) < density
    assert jaccard(a, b) == pytest.approx(density / (2 - density), abs=0.01)


def test_expected_overlap_of_random_masks_with_layer_densities() -> None:
    """For random masks with per-layer densities pₗ and qₗ the reference is
    Σ pₗqₗNₗ / Σ (pₗ + qₗ − pₗqₗ)Nₗ; independent draws of such masks overlap by that much."""
    from prunekit.bench.instrument_report import StoredMask, expected_random_jaccard

    sizes = {"a": 2_000, "b": 60_000}
    dense_a, dense_b = {"a": 0.6, "b": 0.05}, {"a": 0.5, "b": 0.08}
    g = torch.Generator().manual_seed(3)
    draws = [torch.cat([torch.rand(n, generator=g) < d[name] for name, n in sizes.items()]) for d in (dense_a, dense_b)]

    def stored(densities: dict[str, float], bits: torch.Tensor) -> StoredMask:
        row = _row("m", 0, {})
        row = attrs.evolve(row, layer_density=densities)
        return StoredMask(row=row, layout="L", bits=bits.numpy(), exact=True, layers=tuple(sizes.items()), scores=None)

    inter = 0.6 * 0.5 * 2_000 + 0.05 * 0.08 * 60_000
    union = (0.6 + 0.5 - 0.3) * 2_000 + (0.05 + 0.08 - 0.004) * 60_000
    expected = expected_random_jaccard(stored(dense_a, draws[0]), stored(dense_b, draws[1]))
    assert expected == pytest.approx(inter / union)
    assert jaccard(draws[0], draws[1]) == pytest.approx(inter / union, abs=0.01)


def test_packed_masks_and_scores_round_trip() -> None:
    """Packed bits and float32 scores come back as they went in (any length)."""
    bits = torch.rand(1003, generator=torch.Generator().manual_seed(1)) < 0.3
    assert np.array_equal(unpack_bits(pack_bits(bits), 1003), bits.numpy())
    scores = torch.randn(37, generator=torch.Generator().manual_seed(1))
    assert np.allclose(unpack_floats(pack_floats(scores)), scores.numpy())


def test_spearman_of_monotone_and_unrelated_scores() -> None:
    """Spearman is 1 for a monotone transform, -1 for a decreasing one, None without variance."""
    a = np.linspace(0.0, 1.0, 50)
    assert spearman(a, np.exp(a)) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros(50)) is None


# ------------------------------------------------------------------------ suites and grid
def _suite(**overrides: Any) -> Any:
    raw: dict[str, Any] = {
        "name": "instruments_test",
        "dataset": "digits",
        "models": ["digits_mlp"],  # cheap enough to train the instruments' copies in a test
        "sparsities": [0.8],
        "seeds": [0],
        "methods": ["dense", "magnitude_at_init"],
        "checks": ["layerwise_rearrange"],
        "instruments": list(ALL),
        "protocol": {"epochs": 1, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4, "lr_schedule": "cosine", "milestones": []},
        "instrument_options": {
            "gradient_flow": {"epochs": 0.2, "points": 3, "bn_samples": 256, "probe_samples": 128},
            "instability": {"points": 3, "bn_samples": 256, "rewind_points": [0]},
            "mask_stability": {"score_positions": 512},
        },
    }
    raw.update(overrides)
    return suite_from_mapping(raw, "test")


def test_grid_attaches_the_instruments_that_apply() -> None:
    """Clean cells get every applicable instrument with the suite's options; check cells only
    those that measure every cell (gradient_flow, mask_stability); the dense network neither
    winning_ticket nor mask_stability (it has no mask)."""
    grid = expand(_suite())
    by = {(c.method, c.check): dict(c.instruments) for c in grid.cells}
    assert set(by[("magnitude_at_init", "none")]) == set(ALL)
    assert set(by[("magnitude_at_init", "layerwise_rearrange")]) == {"gradient_flow", "mask_stability"}
    assert set(by[("dense", "none")]) == {"gradient_flow", "instability"}
    assert dict(by[("magnitude_at_init", "none")]["instability"]) == {"points": 3, "bn_samples": 256, "rewind_points": (0,)}


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"instruments": ["gradient_flw"]}, "gradient_flow"),
        ({"instruments": ["instability"], "instrument_options": {"instability": {"points": 1}}}, "points"),
        ({"instruments": ["instability"], "instrument_options": {"instability": {"colour": 1}}}, "colour"),
        ({"instruments": [], "instrument_options": {"instability": {"points": 3}}}, "does not list"),
        ({"instruments": "instability"}, "'instruments' must be a list"),
    ],
)
def test_bad_instrument_settings_are_one_line(overrides: dict[str, Any], words: str) -> None:
    """An unknown instrument, a bad or unknown option, options for an unlisted instrument and a
    non-list are one-line errors naming the problem."""
    with pytest.raises(PrunekitError) as err:
        expand(_suite(**overrides))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_instruments_enter_the_identity_only_when_set() -> None:
    """A cell without instruments keeps its key (no "instruments" in its payload); instruments
    and their options change it; a stored spec rebuilds to the same cell."""
    protocol = TrainConfig(epochs=1)
    plain = CellSpec(model="digits_cnn", dataset="digits", method="snip", sparsity=0.8, seed=0, protocol=protocol)
    measured = attrs.evolve(plain, instruments={"instability": {}})
    other = attrs.evolve(plain, instruments={"instability": {"points": 5}})
    keys = {cell_identity(s).key for s in (plain, measured, other)}
    assert len(keys) == 3
    assert "instruments" not in cell_identity(plain).payload
    assert cell_identity(measured).payload["instruments"]["instability"]["options"]["points"] == 11
    from prunekit.bench.runner import spec_payload

    sweep = attrs.evolve(plain, instruments={"instability": {"rewind_points": [0, 0.1]}})
    assert spec_from_payload(spec_payload(sweep)) == sweep


# ----------------------------------------------------------------------- the whole bench
def test_bench_stores_and_reports_every_instrument(tmp_path: Path) -> None:
    """A bench with all four instruments records each one's numbers in the store (the cell's
    accuracy is what it is without instruments), the rows are not stale, and the report's
    sections and figures are drawn from them. Two known answers: the dense cell's trained
    weights are the pruning solution (distance 0), and the rewinding sweep's point k = 0 of a
    ticket at θ₀ retraces the cell's own two copies (the same barrier)."""
    suite = _suite()
    db = tmp_path / "r.db"
    summary = run_bench(suite, db=db, progress=False)
    assert summary.failed == 0, [r.error for r in summary.rows]
    rows = {(r.method, r.check, r.seed): r for r in summary.rows}
    clean = rows[("magnitude_at_init", "none", 0)]
    assert set(clean.instruments) == set(ALL)
    for name, entry in clean.instruments.items():
        assert "error" not in entry, (name, entry)
    values = {name: entry["values"] for name, entry in clean.instruments.items()}
    assert values["instability"]["barrier"] >= 0.0 and isinstance(values["instability"]["stable"], bool)
    assert values["instability"]["barrier_at_step_0"] == values["instability"]["barrier"]
    assert values["gradient_flow"]["grad_norm_init"] > 0 and values["gradient_flow"]["grad_norm_steps"] >= 1
    assert values["winning_ticket"]["ticket_accuracy"] == clean.final_accuracy
    assert values["mask_stability"]["exact"] is True
    dense = rows[("dense", "none", 0)].instruments["gradient_flow"]["values"]
    assert dense["distance_to_solution"] == pytest.approx(0.0, abs=1e-6)  # the dense cell *is* the solution
    assert all(stale_reason(r) is None for r in summary.rows)

    spec = spec_from_payload(clean.spec)
    plain = run_cell(attrs.evolve(spec, instruments=()))
    assert plain.final_accuracy == clean.final_accuracy and list(plain.history) == clean.history

    with ResultStore(db, create=False) as store:
        stored = {r.key: r for r in store.rows()}
    assert stored[clean.key].instruments == clean.instruments

    from prunekit.bench.report import build_report, write_reports

    data = build_report(list(summary.rows))
    titles = [title for title, _ in instrument_sections(data)]
    assert titles == ["Instability (linear mode connectivity)", "Gradient flow", "Winning ticket?", "Mask stability"]
    assert {f.name for f in instrument_figures(data)} == {"gradient_norm", "instability", "winning_ticket_lr"}
    written = {p.name for p in write_reports(data, tmp_path / "report", formats=("md",))}
    assert {"gradient_norm.png", "instability.svg", "winning_ticket_lr.pdf", "report.md"} <= written
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert all(f"## {title}" in markdown for title in titles)
    summary_values = wandb_summary(clean)
    assert summary_values["instruments/instability/barrier"] == values["instability"]["barrier"]


def test_a_store_without_the_instruments_column_reads_empty(tmp_path: Path) -> None:
    """A store written before the instruments column existed reads each row's instruments as {}."""
    db = tmp_path / "old.db"
    with ResultStore(db) as store:
        store.record(ResultRow(key="k", suite="s", model="m", dataset="d", method="x", check="none", sparsity=0.5, seed=0, protocol="p", status="done"))
    with sqlite3.connect(db) as conn:
        conn.execute('ALTER TABLE cells DROP COLUMN "instruments"')
    with ResultStore(db, create=False) as store:
        (row,) = store.rows()
    assert row.instruments == {}


# ------------------------------------------------------------------------------ report
def _row(method: str, seed: int, instruments: dict[str, Any], check: str = "none", sparsity: float = 0.9) -> ResultRow:
    return ResultRow(
        key=f"{method}-{check}-{seed}-{sparsity}", suite="s", model="m", dataset="d", method=method, check=check,
        sparsity=sparsity, seed=seed, protocol="p", status="done", final_accuracy=0.9, instruments=instruments,
    )  # fmt: skip


def _winning_entry(ticket: float, reinit: float, random: float) -> dict[str, Any]:
    def curve(v: float) -> dict[str, Any]:
        return {"x": [0.1], "y": [v], "x_label": "lr", "y_label": "acc"}

    return {"winning_ticket": {"values": {}, "curves": {"ticket_vs_lr": curve(ticket), "reinit_vs_lr": curve(reinit), "random_mask_vs_lr": curve(random)}, "data": {}, "notes": []}}


def test_winning_ticket_column_reads_the_paired_tests() -> None:
    """A ticket 5 points above both baselines on every seed is a winning ticket; one equal to
    its re-initialisation up to 0.01 points is not (it ties); two seeds are too few."""
    noise = [0.0001, -0.0002, 0.0001, 0.0]
    wins = [_row("a", s, _winning_entry(0.9 + n, 0.85, 0.85 + n)) for s, n in enumerate(noise)]
    ties = [_row("b", s, _winning_entry(0.9, 0.9 + n, 0.8)) for s, n in enumerate(noise)]
    few = [_row("c", s, _winning_entry(0.9, 0.8, 0.8)) for s in range(2)]
    from prunekit.bench.report import build_report

    (table,) = dict(instrument_sections(build_report(wins + ties + few)))["Winning ticket?"]
    verdicts = {row[0]: row[-1] for row in table.rows}
    assert verdicts == {"a": "yes", "b": "no", "c": "too few seeds"}
    assert winning(paired_test([5.0, 5.1, 4.9]), paired_test([-3.0, -3.1, -2.9])) == "no"


def test_mask_stability_tables_from_known_masks() -> None:
    """Masks equal across seeds overlap by 1; independent random masks by about d/(2−d); a
    checked ticket equal to its clean one overlaps it by 1."""
    n, d = 20_000, 0.2
    g = torch.Generator().manual_seed(0)
    fixed = torch.rand(n, generator=g) < d

    def entry(bits: torch.Tensor) -> dict[str, Any]:
        return {"mask_stability": {"values": {}, "curves": {}, "notes": [], "data": {"layout": "L", "total": n, "positions": n, "exact": True, "mask": pack_bits(bits)}}}

    rows = [_row("stable", s, entry(fixed)) for s in range(3)]
    rows += [_row("stable", s, entry(fixed), check="reinit") for s in range(3)]
    rows += [_row("random", s, entry(torch.rand(n, generator=g) < d)) for s in range(3)]
    from prunekit.bench.report import build_report

    tables = dict(instrument_sections(build_report(rows)))["Mask stability"]
    seeds = {r[0] + "/" + r[1]: r for r in tables[0].rows}
    assert seeds["stable/none"][5].startswith("1.000")
    assert float(seeds["random/none"][5].split()[0]) == pytest.approx(d / (2 - d), abs=0.02)
    checked = tables[1].rows[0]
    assert checked[:2] == ("stable", "reinit") and checked[4].startswith("1.000")
    between = tables[2]
    assert between.columns == ("method", "random", "stable")
    overlap = float(between.rows[0][2])
    assert overlap == pytest.approx(d / (2 - d), abs=0.02)
    assert all(c != "–" for r in between.rows for c in r[1:])  # every pair shares seeds
    assert [f.name for f in instrument_figures(build_report(rows))] == ["mask_overlap"]
