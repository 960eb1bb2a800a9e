"""The asked sparsity, exactly: seeded tie-breaking in selection, the achieved-sparsity check
after pruning, the tie warnings, and the `prunekit prune` command on a timm ResNet whose SNIP
scores are mostly exactly zero."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.data import ArrayData, DataBundle, make_generator
from prunekit.errors import PrunekitError
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import Method, RatioSchedule, Scorer, ScoringContext
from prunekit.layers import PrunableLayer
from prunekit.masks import Masks
from prunekit.pipeline import TIE_WARNING, prune
from prunekit.plugins import get_plugins, register_plugin, unregister_plugin
from prunekit.selection import TieStats, select_top, select_top_with_stats, zero_fraction
from tests.cli_runner import run_cli as run


def _layer(name: str, shape: tuple[int, ...]) -> PrunableLayer:
    return PrunableLayer(name=name, module=name, kind="linear", shape=shape, index=0)


def _gen(seed: int):  # type: ignore[no-untyped-def]
    return lambda layer: make_generator(seed, "test-ties", layer.name)


# ------------------------------------------------------------------------------ selection
def test_select_top_seeded_tie_break_is_exact_and_deterministic() -> None:
    """Scores 5, 4 and eight tied 1s, keep 5: both scores above the tie are kept, then 3 of
    the 8 ties chosen by the seeded permutation — the same 3 for the same seed, other ones for
    another seed — and TieStats counts those 3 as decided by ties."""
    layer = _layer("w", (10,))
    scores = {"w": torch.tensor([1.0, 5.0, 1.0, 1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0])}
    picks = []
    for seed in range(6):
        masks, stats = select_top_with_stats([layer], scores, {"w": 5}, generator=_gen(seed))
        m = masks["w"]
        assert int(m.sum()) == 5 and bool(m[1]) and bool(m[5])
        assert stats == TieStats(kept=5, by_ties=3) and stats.fraction == pytest.approx(0.6)
        again = select_top([layer], scores, {"w": 5}, generator=_gen(seed))["w"]
        assert torch.equal(m, again)
        picks.append(tuple(torch.nonzero(m).flatten().tolist()))
    assert len(set(picks)) > 1, "the seed does not change which tied weights are kept"


def test_select_top_without_generator_keeps_lowest_tied_positions() -> None:
    """Without a generator, ties go to the lowest positions (the previous behaviour)."""
    layer = _layer("w", (6,))
    scores = {"w": torch.tensor([0.0, 2.0, 0.0, 0.0, 0.0, 0.0])}
    mask = select_top([layer], scores, {"w": 3})["w"]
    assert mask.tolist() == [True, True, True, False, False, False]


def test_seeded_tie_break_is_uniform_over_tied_positions() -> None:
    """Over 400 seeds, each of 10 tied positions (keep 3 of them) is kept about 3/10 of the
    time: the permutation favours no position (binomial bound, 5 sigma)."""
    layer = _layer("w", (10,))
    scores = {"w": torch.zeros(10)}
    counts = np.zeros(10)
    for seed in range(400):
        counts += select_top([layer], scores, {"w": 3}, generator=_gen(seed))["w"].numpy()
    sigma = (400 * 0.3 * 0.7) ** 0.5
    assert np.all(np.abs(counts - 120) < 5 * sigma), counts


def test_a_tie_group_kept_whole_decides_nothing() -> None:
    """When every weight tied at the threshold is kept, no kept weight is counted as chosen
    by the tie-break."""
    layer = _layer("w", (5,))
    scores = {"w": torch.tensor([3.0, 2.0, 2.0, 1.0, 0.0])}
    masks, stats = select_top_with_stats([layer], scores, {"w": 3}, generator=_gen(0))
    assert masks["w"].tolist() == [True, True, True, False, False]
    assert stats == TieStats(kept=3, by_ties=0)


def test_zero_fraction_counts_only_kept_weights() -> None:
    """zero_fraction: exact zeros among the weights still kept (pruned positions left out)."""
    layers = [_layer("a", (4,)), _layer("b", (2,))]
    scores = {"a": torch.tensor([0.0, 0.0, 1.0, 2.0]), "b": torch.tensor([0.0, 3.0])}
    assert zero_fraction(scores, layers) == pytest.approx(3 / 6)
    masks = Masks({"a": torch.tensor([False, True, True, True]), "b": torch.tensor([True, True])})
    assert zero_fraction(scores, layers, masks) == pytest.approx(2 / 5)


# ------------------------------------------------------------------------------- pipeline
class MostlyZero(Scorer):
    """Scores |θ| on the classifier only and exactly 0 everywhere else."""

    name: ClassVar[str] = "mostly_zero"
    description: ClassVar[str] = "zero except the classifier"
    needs_data: ClassVar[bool] = False

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        out = {layer.name: torch.zeros(layer.shape) for layer in ctx.layers}
        last = ctx.layers[-1].name
        out[last] = params[last].detach().abs().clone() + 1.0
        return out


class KeepAll(RatioSchedule):
    """A broken schedule: keeps every weight whatever the density."""

    name: ClassVar[str] = "keep_all"
    description: ClassVar[str] = "ignores the budget"

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        return {layer.name: layer.numel for layer in layers}


class TiesPlugin:
    @hookimpl
    def register_scorers(self, register):  # type: ignore[no-untyped-def]
        register(MostlyZero)

    @hookimpl
    def register_ratio_schedules(self, register):  # type: ignore[no-untyped-def]
        register(KeepAll)


@pytest.fixture
def ties_plugin() -> Iterator[None]:
    register_plugin(TiesPlugin(), "ties_plugin")
    assert not get_plugins().problems
    yield
    unregister_plugin("ties_plugin")


def _net(zero_bn: bool = False) -> nn.Module:
    """conv(1→8, 72) - BN - ReLU - conv(8→8, 576) - pool - linear(8→4, 32): 680 weights."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )
    if zero_bn:
        nn.init.zeros_(net[1].weight)
    return net


def _data() -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 1, 6, 6), generator=g, dtype=torch.uint8)
    y = torch.arange(16) % 4
    return DataBundle(name="toy", train=ArrayData(x=x, y=y), test=ArrayData(x=x[:4], y=y[:4]),
                      num_classes=4, mean=(0.5,), std=(0.25,))


MOSTLY_ZERO = Method(name="mz", description="d", family="initial", scorer="mostly_zero", schedule="global")


def test_prune_hits_the_sparsity_when_most_scores_are_zero(ties_plugin: None) -> None:
    """680 weights at 90 % sparsity keep round(68) = 68: the 32 classifier weights (the only
    non-zero scores) and 36 of the 648 tied zeros. tie_fraction = 36/68 and both warnings are
    in the metadata; the same seed gives the same masks, another seed other ones."""
    outcome = prune(_net(), _data(), MOSTLY_ZERO, 0.9, seed=1, allow_collapse=True)
    masks, meta = outcome.masks, outcome.metadata
    assert masks.kept() == 68 and meta["kept"] == 68 and meta["total"] == 680
    assert meta["achieved_sparsity"] == pytest.approx(1 - 68 / 680)
    assert masks.layer_kept()["6.weight"] == 32
    assert meta["tie_fraction"] == pytest.approx(36 / 68) and meta["tie_fraction"] > TIE_WARNING
    assert meta["zero_score_fraction"] == pytest.approx(648 / 680)
    assert len(meta["warnings"]) == 2
    assert "exactly 0" in meta["warnings"][0] and "tie-break" in meta["warnings"][1]
    again = prune(_net(), _data(), MOSTLY_ZERO, 0.9, seed=1, allow_collapse=True).masks
    other = prune(_net(), _data(), MOSTLY_ZERO, 0.9, seed=2, allow_collapse=True).masks
    assert again.equals(masks) and not other.equals(masks)
    assert other.kept() == 68


def test_zero_initialised_norms_get_a_hint(ties_plugin: None) -> None:
    """With a zero-initialised BatchNorm in the model, the tie warnings name the fix
    (zero_init_last=false)."""
    meta = prune(_net(zero_bn=True), _data(), MOSTLY_ZERO, 0.9, seed=0, allow_collapse=True).metadata
    assert any("zero_init_last=false" in w for w in meta["warnings"])


def test_no_warning_without_ties() -> None:
    """Magnitude scores have no ties: tie_fraction 0 and no warning."""
    method = get_plugins().registry("method").get("magnitude_at_init")
    meta = prune(_net(), _data(), method, 0.9, seed=0, allow_collapse=True).metadata
    assert meta["tie_fraction"] == 0.0 and meta["warnings"] == []


def test_a_result_at_the_wrong_sparsity_is_an_error(ties_plugin: None) -> None:
    """A schedule that misses its budget by more than one weight per layer makes prune raise
    a one-line error naming the kept count and the schedule, instead of returning masks."""
    method = Method(name="broken", description="d", family="initial", scorer="magnitude", schedule="keep_all")
    with pytest.raises(PrunekitError, match=r"kept 680 of 680 .*schedule 'keep_all'") as err:
        prune(_net(), _data(), method, 0.9, seed=0)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ CLI
def _image_folder(root: Path, size: int = 32, per_class: int = 4) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for label in ("ant", "bee"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_cli_snip_on_timm_resnet18_reports_the_asked_sparsity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`prunekit prune --method snip --sparsity 0.9 --model resnet18 --dataset imagefolder`:
    the summary says sparsity 0.9000, the tie warning goes to stderr, and the mask file and
    --json carry tie_fraction, warnings, the model options and the prunable policy."""
    root = _image_folder(tmp_path / "images")
    out_file = tmp_path / "m.safetensors"
    args = ["prune", "--method", "snip", "--sparsity", "0.9", "--model", "resnet18", "--dataset", "imagefolder",
            "--data-root", str(root), "--device", "cpu", "--scorer-option", "samples_per_class=2",
            "--out", str(out_file)]
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert "sparsity 0.9000" in " ".join(out.split())
    assert "warning:" in err and "tie-break" in err and "zero_init_last=false" in err
    masks, meta = Masks.load(out_file)
    assert abs(masks.kept() - round(0.1 * masks.total())) <= len(masks)
    assert float(meta["tie_fraction"]) > 0.5 and json.loads(meta["warnings"])
    assert json.loads(meta["model_options"]) == {}
    assert json.loads(meta["policy"])["attention"] is True


def test_cli_model_options_are_recorded_and_reused_by_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model-option hidden=16 builds digits_mlp with 16 hidden units; the mask file records
    it and `prunekit train` builds the same model from it."""
    out_file = tmp_path / "m.safetensors"
    code, out, err = run(
        ["prune", "--method", "magnitude_at_init", "--sparsity", "0.5", "--model", "digits_mlp",
         "--model-option", "hidden=16", "--out", str(out_file), "--json"], capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["model_options"] == {"hidden": 16} and summary["total"] == 64 * 16 + 16 * 10
    assert summary["warnings"] == [] and summary["tie_fraction"] == 0.0
    code, out, err = run(["train", "--masks", str(out_file), "--epochs", "1", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["model_options"] == {"hidden": 16}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("colour=red", "model 'digits_mlp' has no option 'colour'"),
        ("num_classes=3", "model option num_classes is set by the dataset"),
        ("hidden", "model option 'hidden' is not key=value"),
    ],
)
def test_cli_bad_model_options_are_one_line(option: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown, reserved or malformed model option is one line on stderr, exit 1."""
    code, _, err = run(
        ["prune", "--method", "snip", "--sparsity", "0.5", "--model", "digits_mlp", "--model-option", option], capsys
    )
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


class KeepsTies(RatioSchedule):
    """The old global rule: one threshold, every weight tied at it kept."""

    name: ClassVar[str] = "keeps_ties"
    description: ClassVar[str] = "keeps every tie"

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        total = sum(layer.numel for layer in layers)
        k = round(density * total)
        if k <= 0:
            return {layer.name: 0 for layer in layers}
        flat = torch.cat([scores[layer.name].flatten().double() for layer in layers])
        threshold = torch.topk(flat, k).values.min()
        return {layer.name: int((scores[layer.name].double() >= threshold).sum()) for layer in layers}


def test_schedule_contract_catches_a_schedule_that_keeps_ties() -> None:
    """prunekit.testing.check_schedule fails a schedule that keeps every tied weight, on the
    scores that are mostly exactly 0; the built-in global passes."""
    from prunekit.testing import check_schedule

    with pytest.raises(AssertionError, match="most scores exactly 0"):
        check_schedule(KeepsTies)
    check_schedule("global")
