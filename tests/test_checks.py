"""The sanity-check battery: data, score and ticket perturbations and their composition.

Golden values come from the definitions (paper-spec.md), never from the checks themselves:
Kaiming std sqrt(2 / fan_in), the chi-square quantile of a table, "the k smallest |θ|" computed
with torch.topk, sorted pixel values, class counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar

import attrs
import numpy as np
import pytest
import torch
from torch import nn

from prunekit.data import ArrayData, Augment, DataBundle, iterate_batches, make_generator
from prunekit.errors import PrunekitError
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import Method, SanityCheck, Scorer, ScoringContext, Stage
from prunekit.masks import Masks
from prunekit.pipeline import PruneRun, prune, resolve_check
from prunekit.plugins import get_plugins, register_plugin, unregister_plugin
from prunekit_plugins.checks import (
    ComposedCheck,
    HalfDataset,
    LayerwiseRearrange,
    LayerwiseWeightShuffle,
    NoCheck,
    RandomLabels,
    RandomPixels,
    Reinit,
    ScoreInversion,
    compose,
)

CLASSES = 4
BIG = "6.weight"  # Linear(16, 512) of make_net: fan_in 16
BIG_FAN_IN = 16


# ------------------------------------------------------------------------------- fixtures
def make_net(seed: int) -> nn.Module:
    """Two convs and two linears; conv/linear weights Kaiming-normal (fan_in, relu), default biases."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(BIG_FAN_IN, 512),
            nn.ReLU(),
            nn.Linear(512, CLASSES),
        )
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    return net


def make_bundle(per_class: int = 100, seed: int = 0) -> DataBundle:
    """1×6×6 uint8 images of random values (so every image is identifiable), 4 classes."""
    g = torch.Generator().manual_seed(seed)
    n = per_class * CLASSES
    x = torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8)
    y = torch.arange(n, dtype=torch.int64) % CLASSES
    train = ArrayData(x=x, y=y)
    test = ArrayData(x=x[:8].clone(), y=y[:8].clone())
    return DataBundle(name="toy", train=train, test=test, num_classes=CLASSES, mean=(0.5,), std=(0.25,))


class SpyScorer(Scorer):
    """Data-dependent scorer recording the scoring batches it is given; scores |θ|."""

    name: ClassVar[str] = "spy"
    description: ClassVar[str] = "records its scoring batches"
    needs_data: ClassVar[bool] = True
    seen: ClassVar[list[tuple[tuple[torch.Tensor, torch.Tensor], ...]]] = []

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        SpyScorer.seen.append(ctx.batches)
        params = dict(model.named_parameters())
        return {layer.name: params[layer.name].detach().abs().clone() for layer in ctx.layers}


class SpyPlugin:
    @hookimpl
    def register_scorers(self, register):  # type: ignore[no-untyped-def]
        register(SpyScorer)


SPY = Method(name="spy_method", description="spy scores", family="initial", scorer="spy", schedule="uniform")
MAG_UNIFORM = Method(
    name="mag_uniform", description="|θ| per layer", family="initial", scorer="magnitude", schedule="uniform"
)


@pytest.fixture
def spy() -> Iterator[type[SpyScorer]]:
    SpyScorer.seen.clear()
    register_plugin(SpyPlugin(), "spy_plugin")
    assert not get_plugins().problems
    yield SpyScorer
    unregister_plugin("spy_plugin")
    SpyScorer.seen.clear()


def scoring_batch(
    spy: type[SpyScorer], check_name: str, seed: int = 3
) -> tuple[DataBundle, torch.Tensor, torch.Tensor]:
    """Prune with the spy method under ``check_name``; the bundle and the one scoring batch."""
    data = make_bundle()
    train, x0, y0 = data.train, data.train.x.clone(), data.train.y.clone()
    prune(make_net(0), data, SPY, 0.5, seed=seed, check=resolve_check(check_name, SPY))
    assert data.train is train
    assert torch.equal(data.train.x, x0) and torch.equal(data.train.y, y0), "clean data changed"
    (batches,) = spy.seen
    ((xb, yb),) = batches
    return data, xb, yb


def prune_ticket(check_name: str | None, seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """magnitude + uniform at 90% sparsity on make_net(0), with a ticket check."""
    model = make_net(0)
    check = resolve_check(check_name, MAG_UNIFORM) if check_name else None
    data = make_bundle(per_class=10)
    out = prune(model, data, MAG_UNIFORM, 0.9, seed=seed, check=check, init_model=make_net)
    return model, dict(out.masks)


# ------------------------------------------------------------------------- pruning data
def test_random_labels_change_scoring_labels_not_training_data(spy: type[SpyScorer]) -> None:
    """Through prune: the scoring batch holds the original images with mostly new labels, and
    the bundle's train split is bit-identical afterwards."""
    data, xb, yb = scoring_batch(spy, "random_labels")
    clean = data.normalize(data.train.x).flatten(1)
    match = (xb.flatten(1)[:, None, :] == clean[None]).all(-1)
    assert (match.sum(1) == 1).all(), "images must be kept as they are"
    rows = match.float().argmax(1)
    changed = (yb != data.train.y[rows]).float().mean().item()
    assert changed > 0.5  # expected 1 - 1/4


def test_random_pixels_change_scoring_images_not_training_data(spy: type[SpyScorer]) -> None:
    """Through prune: every scoring image is a rearrangement of exactly one training image (with
    that image's label) and none is in its original arrangement; the train split is unchanged."""
    data, xb, yb = scoring_batch(spy, "random_pixels")
    clean = data.normalize(data.train.x).flatten(1)
    match = (xb.flatten(1).sort(1).values[:, None, :] == clean.sort(1).values[None]).all(-1)
    assert (match.sum(1) == 1).all(), "each scoring image must hold one training image's values"
    rows = match.float().argmax(1)
    assert torch.equal(yb, data.train.y[rows]), "labels must be kept"
    assert not (xb.flatten(1) == clean[rows]).all(1).any(), "images must be rearranged"


def test_corrupted_data_randomises_labels_and_pixels(spy: type[SpyScorer]) -> None:
    """corrupted_data (registered composition): scoring images rearranged and labels mostly new."""
    data, xb, yb = scoring_batch(spy, "corrupted_data")
    clean = data.normalize(data.train.x).flatten(1)
    match = (xb.flatten(1).sort(1).values[:, None, :] == clean.sort(1).values[None]).all(-1)
    assert (match.sum(1) == 1).all()
    rows = match.float().argmax(1)
    assert not (xb.flatten(1) == clean[rows]).all(1).any()
    assert (yb != data.train.y[rows]).float().mean().item() > 0.5


def test_random_pixels_one_fixed_permutation_per_image() -> None:
    """Each image is a permutation of its own values (over C·H·W); images get different
    permutations; the same seed gives the same images; the input is untouched; the permuted
    images are fixed across epochs."""
    n, shape = 50, (3, 4, 4)
    base = torch.arange(48, dtype=torch.uint8).view(1, *shape)
    data = ArrayData(x=base.repeat(n, 1, 1, 1), y=torch.arange(n, dtype=torch.int64))
    x0, y0 = data.x.clone(), data.y.clone()
    out = RandomPixels().perturb_data(data, n, make_generator(7, "pixels"))
    again = RandomPixels().perturb_data(data, n, make_generator(7, "pixels"))
    other = RandomPixels().perturb_data(data, n, make_generator(8, "pixels"))
    assert torch.equal(data.x, x0) and torch.equal(data.y, y0)
    assert out.x.shape == data.x.shape and out.x.dtype == torch.uint8
    flat = out.x.flatten(1)
    assert torch.equal(flat.sort(1).values, x0.flatten(1).sort(1).values)
    assert torch.unique(flat, dim=0).shape[0] == n, "two images share a permutation"
    assert not (flat == x0.flatten(1)).all(1).any()
    assert torch.equal(out.y, y0)
    assert torch.equal(out.x, again.x) and not torch.equal(out.x, other.x)
    epochs = []
    for epoch in range(2):
        seen = {}
        for xb, yb in iterate_batches(out, 8, make_generator(epoch, "order")):
            seen.update({int(label): img.clone() for img, label in zip(xb, yb)})
        epochs.append(seen)
    assert all(torch.equal(epochs[0][i], epochs[1][i]) for i in range(n))


def test_random_labels_uniform_and_mostly_new() -> None:
    """5000 labels over 10 classes: chi-square below the 0.1% quantile (27.88, 9 dof), about a
    tenth unchanged, images kept, same seed gives the same labels, input untouched."""
    n, c = 5000, 10
    y = torch.arange(n, dtype=torch.int64) % c
    data = ArrayData(x=torch.zeros(n, 1, 2, 2, dtype=torch.uint8), y=y)
    out = RandomLabels().perturb_data(data, c, make_generator(1, "labels"))
    assert out.y.dtype == torch.int64 and int(out.y.min()) >= 0 and int(out.y.max()) < c
    counts = torch.bincount(out.y, minlength=c).double()
    chi2 = float(((counts - n / c) ** 2 / (n / c)).sum())
    assert chi2 < 27.88
    same = (out.y == y).double().mean().item()
    assert 0.05 < same < 0.15
    assert torch.equal(out.x, data.x)
    assert torch.equal(data.y, torch.arange(n) % c)
    assert torch.equal(out.y, RandomLabels().perturb_data(data, c, make_generator(1, "labels")).y)


def _indexed_data(counts: tuple[int, ...]) -> ArrayData:
    n = sum(counts)
    y = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(counts)])
    y = y[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    i = torch.arange(n)
    x = torch.stack([i % 256, i // 256], dim=1).to(torch.uint8).view(n, 1, 1, 2)
    return ArrayData(x=x, y=y)


def _rows(data: ArrayData) -> torch.Tensor:
    return data.x[:, 0, 0, 0].long() + 256 * data.x[:, 0, 0, 1].long()


def test_half_dataset_fixed_stratified_half() -> None:
    """Stratified: half of every class (±1 per class), distinct original rows with their labels,
    in original order, the same for the same seed and different for another; non-stratified:
    exactly half of all rows."""
    counts = (101, 300, 599)
    data = _indexed_data(counts)
    x0, y0 = data.x.clone(), data.y.clone()
    out = HalfDataset().perturb_data(data, 3, make_generator(5, "half"))
    assert torch.equal(data.x, x0) and torch.equal(data.y, y0)
    rows = _rows(out)
    assert torch.unique(rows).numel() == rows.numel() == len(out)
    assert torch.equal(rows, rows.sort().values)
    assert torch.equal(out.y, y0[rows])
    for c, k in enumerate(counts):
        assert int((out.y == c).sum()) in (k // 2, (k + 1) // 2)
    assert abs(len(out) - sum(counts) / 2) <= len(counts)
    again = HalfDataset().perturb_data(data, 3, make_generator(5, "half"))
    other = HalfDataset().perturb_data(data, 3, make_generator(6, "half"))
    assert torch.equal(_rows(again), rows)
    assert not torch.equal(_rows(other), rows)
    plain = HalfDataset(stratified=False).perturb_data(data, 3, make_generator(5, "half"))
    assert len(plain) == sum(counts) // 2
    assert torch.unique(_rows(plain)).numel() == len(plain)


def test_half_dataset_first_rows_are_the_authors_half() -> None:
    """subset="first": the first round(fraction·N) rows in the dataset's order whatever the seed
    (the authors' 390 batches of 64 = 24,960 of CIFAR's 50,000 at fraction 0.4992), which are
    not the rows the seeded stratified half selects."""
    counts = (20_000, 30_000)
    data = _indexed_data(counts)
    first = HalfDataset(fraction=0.4992, subset="first")
    out = first.perturb_data(data, 2, make_generator(5, "half"))
    assert len(out) == 390 * 64
    assert torch.equal(_rows(out), torch.arange(390 * 64))
    assert torch.equal(out.y, data.y[: 390 * 64])
    again = first.perturb_data(data, 2, make_generator(6, "half"))
    assert torch.equal(_rows(again), _rows(out))
    stratified = HalfDataset(fraction=0.4992).perturb_data(data, 2, make_generator(5, "half"))
    overlap = torch.isin(_rows(stratified), _rows(out)).double().mean().item()
    assert 0.4 < overlap < 0.6  # a seeded half shares about half its rows with the first half
    with pytest.raises(ValueError, match="subset"):
        HalfDataset(subset="last")


def test_random_labels_fixed_seed_gives_the_authors_labels() -> None:
    """seed=12345: exactly the labels of the authors' CIFAR10RandomLabels (numpy's global
    seed 12345, rand(N) <= 1 as the mask, then choice(classes, mask.sum())), whatever the run
    seed; the default (seed None) follows the run seed instead."""
    n, c = 3000, 10
    data = ArrayData(x=torch.zeros(n, 1, 1, 1, dtype=torch.uint8), y=torch.arange(n, dtype=torch.int64) % c)
    saved = np.random.get_state()
    try:
        np.random.seed(12345)
        mask = np.random.rand(n) <= 1.0
        authors = np.random.choice(c, mask.sum())
    finally:
        np.random.set_state(saved)
    fixed = RandomLabels(seed=12345)
    a = fixed.perturb_data(data, c, make_generator(0, "labels"))
    b = fixed.perturb_data(data, c, make_generator(1, "labels"))
    assert torch.equal(a.y, torch.from_numpy(authors.astype(np.int64)))
    assert torch.equal(a.y, b.y)
    seeded = RandomLabels().perturb_data(data, c, make_generator(0, "labels")).y
    assert not torch.equal(seeded, RandomLabels().perturb_data(data, c, make_generator(1, "labels")).y)
    assert not torch.equal(seeded, a.y)
    with pytest.raises(ValueError):
        RandomLabels(seed=-1)


# --------------------------------------------------------------------------------- scores
def test_score_inversion_keeps_lowest_under_uniform_budgets() -> None:
    """magnitude + uniform at 90%: every layer keeps exactly its round(0.1·n) smallest |θ₀|."""
    model = make_net(0)
    dense = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}
    check = resolve_check("score_inversion", MAG_UNIFORM)
    masks = prune(model, make_bundle(per_class=10), MAG_UNIFORM, 0.9, seed=0, check=check).masks
    assert list(masks) == list(dense)
    for name, w in dense.items():
        k = round(0.1 * w.numel())
        expected = torch.zeros(w.numel(), dtype=torch.bool)
        expected[torch.topk(w.abs().flatten(), k, largest=False).indices] = True
        assert torch.equal(masks[name].flatten(), expected), name


def test_score_inversion_returns_new_scores() -> None:
    """perturb_scores negates into new tensors and leaves its input as it was."""
    scores = {"a": torch.tensor([0.5, -1.0, 2.0])}
    out = ScoreInversion().perturb_scores(scores, make_generator(0))
    assert torch.equal(scores["a"], torch.tensor([0.5, -1.0, 2.0]))
    assert torch.equal(out["a"], torch.tensor([-0.5, 1.0, -2.0]))


MAG_GLOBAL = Method(
    name="mag_global", description="|θ| global", family="initial", scorer="magnitude", schedule="global"
)


def test_score_inversion_scope_per_layer_vs_global() -> None:
    """magnitude + global at 90% on make_net(0): scope="global" keeps the round(0.1·N) smallest
    |θ₀| of the whole net (Frankle et al.'s inversion); "per_layer" keeps, in every layer, as
    many of its smallest |θ₀| as the clean global threshold keeps there. The masks differ."""
    dense = {n: p.detach().clone() for n, p in make_net(0).named_parameters() if n.endswith("weight")}
    flat = torch.cat([w.abs().flatten() for w in dense.values()])
    k = round(0.1 * flat.numel())
    lowest = torch.zeros(flat.numel(), dtype=torch.bool)
    lowest[torch.topk(flat, k, largest=False).indices] = True
    highest = torch.zeros(flat.numel(), dtype=torch.bool)
    highest[torch.topk(flat, k).indices] = True
    masks = {}
    for scope in ("global", "per_layer"):
        check = resolve_check("score_inversion", MAG_GLOBAL, {"scope": scope})
        masks[scope] = prune(
            make_net(0), make_bundle(per_class=10), MAG_GLOBAL, 0.9, seed=0, check=check, allow_collapse=True
        ).masks
    start = 0
    for name, w in dense.items():
        n = w.numel()
        assert torch.equal(masks["global"][name].flatten(), lowest[start : start + n]), name
        per_layer = torch.zeros(n, dtype=torch.bool)
        per_layer[torch.topk(w.abs().flatten(), int(highest[start : start + n].sum()), largest=False).indices] = True
        assert torch.equal(masks["per_layer"][name].flatten(), per_layer), name
        start += n
    assert any(not torch.equal(masks["global"][n], masks["per_layer"][n]) for n in dense)


def test_score_inversion_scope_decides_when_scores_are_perturbed() -> None:
    """Only the global scope acts before the budgets, alone or inside a composition."""
    assert not ScoreInversion().scores_before_budgets()
    assert ScoreInversion(scope="global").scores_before_budgets()
    assert compose(RandomLabels(), ScoreInversion(scope="global")).scores_before_budgets()  # type: ignore[union-attr]
    assert not compose(RandomLabels(), ScoreInversion()).scores_before_budgets()  # type: ignore[union-attr]
    with pytest.raises(PrunekitError, match="scope"):
        resolve_check("score_inversion", MAG_GLOBAL, {"scope": "sideways"})


def test_scoring_augment_crops_and_flips_the_same_images(spy: type[SpyScorer]) -> None:
    """A method's scoring_augment: the scoring batch holds the same images and labels as without
    it, each one zero-padded by the data's crop padding, cropped and maybe flipped (checked
    against every crop offset and flip of the clean image), and some images changed."""
    data = attrs.evolve(make_bundle(), augment=Augment(crop_padding=1, hflip=True))
    batches = {}
    for augment in (False, True):
        spy.seen.clear()
        method = attrs.evolve(SPY, scoring_augment=augment)
        prune(make_net(0), data, method, 0.5, seed=3)
        ((batches[augment],),) = spy.seen
    (clean, y0), (aug, y1) = batches[False], batches[True]
    assert torch.equal(y0, y1)
    zero = data.normalize(torch.zeros(1, 1, 1, 1, dtype=torch.uint8)).item()
    padded = torch.nn.functional.pad(clean, (1, 1, 1, 1), value=zero)
    changed = 0
    for i in range(clean.shape[0]):
        candidates = [
            c
            for oy in range(3)
            for ox in range(3)
            for c in (padded[i, :, oy : oy + 6, ox : ox + 6], padded[i, :, oy : oy + 6, ox : ox + 6].flip(-1))
        ]
        assert any(torch.equal(aug[i], c) for c in candidates), i
        changed += int(not torch.equal(aug[i], clean[i]))
    assert changed > clean.shape[0] // 2


# --------------------------------------------------------------------------------- ticket
def test_layerwise_rearrange_keeps_counts_moves_positions() -> None:
    """Every layer keeps its count, most kept positions move (about 10% overlap is expected at
    90% sparsity), positions kept in both keep the ticket's value, newly kept ones get nonzero
    values, pruned ones are zero."""
    clean_model, clean = prune_ticket(None)
    model, masks = prune_ticket("layerwise_rearrange")
    clean_w, w = dict(clean_model.named_parameters()), dict(model.named_parameters())
    moved = total = 0
    for name, m in masks.items():
        assert int(m.sum()) == int(clean[name].sum()), name
        both, new = m & clean[name], m & ~clean[name]
        moved += int(new.sum())
        total += int(m.sum())
        assert torch.equal(w[name][both], clean_w[name][both])
        assert (w[name][new] != 0).all()
        assert (w[name][~m] == 0).all()
    assert moved / total > 0.5


def test_layerwise_rearrange_gives_new_positions_their_unpruned_weights() -> None:
    """Every kept position of the rearranged ticket holds the ticket's own unpruned weight
    there (θ₀ of the same seed), not a fresh draw."""
    init = dict(make_net(0).named_parameters())
    model, masks = prune_ticket("layerwise_rearrange")
    w = dict(model.named_parameters())
    for name, m in masks.items():
        assert torch.equal(w[name][m], init[name].detach()[m]), name


def test_layerwise_weight_shuffle_keeps_mask_and_values_changes_order() -> None:
    """The mask is unchanged, each layer keeps the multiset of its surviving values, and most
    surviving values move."""
    clean_model, clean = prune_ticket(None)
    model, masks = prune_ticket("layerwise_weight_shuffle")
    clean_w, w = dict(clean_model.named_parameters()), dict(model.named_parameters())
    changed = total = 0
    for name, m in masks.items():
        assert torch.equal(m, clean[name]), name
        assert torch.equal(w[name][m].sort().values, clean_w[name][m].sort().values), name
        assert (w[name][~m] == 0).all()
        changed += int((w[name][m] != clean_w[name][m]).sum())
        total += int(m.sum())
    assert changed / total > 0.5


def test_reinit_redraws_from_init_distribution() -> None:
    """The mask is unchanged; surviving weights of the 16→512 linear have std sqrt(2/16) (Kaiming
    fan-in) within 15%, unlike the magnitude-selected originals; values differ; biases untouched."""
    clean_model, clean = prune_ticket(None)
    model, masks = prune_ticket("reinit")
    clean_p, p = dict(clean_model.named_parameters()), dict(model.named_parameters())
    for name, m in masks.items():
        assert torch.equal(m, clean[name]), name
        assert (p[name][~m] == 0).all()
        assert (p[name][m] == clean_p[name][m]).double().mean().item() < 0.01
    expected = math.sqrt(2.0 / BIG_FAN_IN)
    kept = p[BIG][masks[BIG]]
    assert kept.numel() > 800
    assert abs(kept.std().item() / expected - 1) < 0.15
    assert clean_p[BIG][masks[BIG]].std().item() > 1.3 * expected  # what a no-op would leave
    for name, value in p.items():
        if name.endswith("bias"):
            assert torch.equal(value, clean_p[name]), name


@pytest.mark.parametrize("name", ["layerwise_rearrange", "layerwise_weight_shuffle", "reinit"])
def test_ticket_checks_are_determined_by_the_seed(name: str) -> None:
    """The same run seed gives the same perturbed ticket bit for bit; another seed another."""
    a_model, a = prune_ticket(name, seed=0)
    b_model, b = prune_ticket(name, seed=0)
    c_model, _ = prune_ticket(name, seed=1)
    sa, sb, sc = a_model.state_dict(), b_model.state_dict(), c_model.state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ---------------------------------------------------------------------------- applicability
@pytest.mark.parametrize(
    ("check", "method", "reason"),
    [
        ("random_labels", "magnitude_at_init", "does not use data"),
        ("random_pixels", "magnitude_at_init", "does not use data"),
        ("corrupted_data", "magnitude_at_init", "does not use data"),
        ("score_inversion", "random_uniform", "not random"),
        ("layerwise_rearrange", "dense", "not dense"),
        ("reinit", "dense", "not dense"),
    ],
)
def test_check_refused_for_registered_methods(check: str, method: str, reason: str) -> None:
    """resolve_check raises PrunekitError with the reason when a check does not apply."""
    m = get_plugins().registry("method").get(method)
    with pytest.raises(PrunekitError, match=reason):
        resolve_check(check, m)


class DiceScorer(Scorer):
    """Random scores under a name other than the built-in's: only its trait says so."""

    name: ClassVar[str] = "dice"
    description: ClassVar[str] = "uniform noise, declared random"
    needs_data: ClassVar[bool] = False
    random: ClassVar[bool] = True

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        return {layer.name: torch.rand(layer.shape, generator=ctx.generator("dice", layer.name)) for layer in ctx.layers}


class DicePlugin:
    @hookimpl
    def register_scorers(self, register):  # type: ignore[no-untyped-def]
        register(DiceScorer)


def test_score_inversion_reads_the_random_trait_not_the_name() -> None:
    """score_inversion refuses a method whose scorer declares ``random = True`` whatever its
    name, accepts one whose scorer does not, and the built-in random scorer declares the trait."""
    assert get_plugins().registry("scorer").get("random").random is True
    assert get_plugins().registry("scorer").get("magnitude").random is False
    register_plugin(DicePlugin(), "dice_plugin")
    try:
        assert not get_plugins().problems
        dice = Method(name="dice_uniform", description="d", family="initial", scorer="dice", schedule="uniform")
        with pytest.raises(PrunekitError, match="scores at random"):
            resolve_check("score_inversion", dice)
        assert resolve_check("score_inversion", MAG_UNIFORM) is not None
    finally:
        unregister_plugin("dice_plugin")


def test_check_applicability_refinements(spy: type[SpyScorer]) -> None:
    """score_inversion refuses a random scorer even in an initial-family method; half_dataset
    refuses initial tickets and accepts partially-trained ones; data checks accept a
    data-dependent scorer."""
    random_initial = Method(name="rand_init", description="r", family="initial", scorer="random")
    with pytest.raises(PrunekitError, match="scores at random"):
        resolve_check("score_inversion", random_initial)
    with pytest.raises(PrunekitError, match="hybrid, partially_trained"):
        resolve_check("half_dataset", SPY)
    lrr = Method(
        name="lrr",
        description="l",
        family="partially_trained",
        scorer="magnitude",
        pretrain=True,
        rewind="trained",
    )
    assert isinstance(resolve_check("half_dataset", lrr), HalfDataset)
    assert isinstance(resolve_check("random_labels", SPY), RandomLabels)
    assert isinstance(resolve_check("score_inversion", SPY), ScoreInversion)


# ------------------------------------------------------------------------------ composition
def test_compose_unions_stages_and_intersects_families() -> None:
    """compose: stages are the union, families the intersection, components refine refusal;
    None / none are dropped, one check stays itself, nested compositions flatten."""
    both = compose(RandomLabels(), Reinit())
    assert isinstance(both, ComposedCheck)
    assert both.stages == frozenset({"pruning_data", "ticket"})
    assert both.name == "random_labels+reinit"
    assert compose(HalfDataset(), LayerwiseRearrange()).applies_to == frozenset({"partially_trained", "hybrid"})
    random_initial = Method(name="rand_init", description="r", family="initial", scorer="random")
    reason = compose(LayerwiseRearrange(), ScoreInversion()).not_applicable(random_initial, False)
    assert reason is not None and "random" in reason
    assert compose(LayerwiseRearrange(), ScoreInversion()).not_applicable(MAG_UNIFORM, False) is None
    shuffle = LayerwiseWeightShuffle()
    assert compose(None, NoCheck(), shuffle) is shuffle
    assert compose(compose(RandomLabels(), RandomPixels()), Reinit()).checks == (  # type: ignore[union-attr]
        RandomLabels(),
        RandomPixels(),
        Reinit(),
    )


def test_composed_data_check_applies_components_in_order() -> None:
    """A composition's perturb_data equals its components applied in order on one generator."""
    data = make_bundle(per_class=5).train
    composed = compose(RandomLabels(), RandomPixels())
    assert composed is not None
    out = composed.perturb_data(data, CLASSES, make_generator(2, "c"))
    g = make_generator(2, "c")
    expected = RandomPixels().perturb_data(RandomLabels().perturb_data(data, CLASSES, g), CLASSES, g)
    assert torch.equal(out.x, expected.x) and torch.equal(out.y, expected.y)
    assert not torch.equal(out.y, data.y) and not torch.equal(out.x, data.x)


# ------------------------------------------------------------- declared stages, derived refusals
DATA_FREE_INITIAL = Method(name="mag_init", description="m", family="initial", scorer="magnitude")
BUILTIN_STAGES = {
    "none": {"ticket"},
    "random_labels": {"pruning_data"},
    "random_pixels": {"pruning_data"},
    "half_dataset": {"pruning_data"},
    "corrupted_data": {"pruning_data"},
    "score_inversion": {"scores"},
    "layerwise_rearrange": {"ticket"},
    "layerwise_weight_shuffle": {"ticket"},
    "reinit": {"ticket"},
}


def test_builtin_checks_declare_their_stages_as_the_papers_place_them() -> None:
    """Every built-in check's ``stages`` is the set paper-spec.md places it at (corrupted_data's
    derived from its two data parts), and none overrides the core's not_applicable."""
    registry = get_plugins().registry("sanity_check")
    for name, stages in BUILTIN_STAGES.items():
        check = registry.get(name)()
        assert check.stages == frozenset(stages), name
        assert type(check).not_applicable is SanityCheck.not_applicable, name
    assert registry.get("corrupted_data")().applies_to == frozenset({"initial", "partially_trained", "hybrid"})


@pytest.mark.parametrize("name", ["random_labels", "random_pixels", "corrupted_data"])
def test_data_check_on_a_data_free_method_gives_the_core_reason(name: str) -> None:
    """A pruning-data check on a method of a family it applies to but that prunes without
    data is refused with the one text the core derives from the stage, word for word."""
    check = get_plugins().registry("sanity_check").get(name)()
    assert check.not_applicable(DATA_FREE_INITIAL, False) == (
        f"mag_init does not use data to prune, so {name} cannot change it"
    )
    assert check.not_applicable(DATA_FREE_INITIAL, True) is None


@attrs.frozen
class Blur(SanityCheck):
    """A third-party data check that declares its stage and families, nothing more."""

    name: ClassVar[str] = "blur"
    description: ClassVar[str] = "pruning data blurred"
    stages: ClassVar[frozenset[Stage]] = frozenset({"pruning_data"})
    applies_to: ClassVar[frozenset[str]] = frozenset({"initial"})


def test_declared_stage_alone_gives_a_check_the_data_and_family_rules() -> None:
    """A check declaring only ``stages`` and ``applies_to`` is refused on a data-free method
    and on another family, with the core's texts, and applies otherwise."""
    assert Blur().not_applicable(DATA_FREE_INITIAL, False) == (
        "mag_init does not use data to prune, so blur cannot change it"
    )
    hybrid = Method(name="hyb", description="h", family="hybrid", scorer="magnitude")
    assert Blur().not_applicable(hybrid, True) == "blur applies to initial tickets, not hybrid"
    assert Blur().not_applicable(DATA_FREE_INITIAL, True) is None


def test_score_inversion_keeps_its_reasons_word_for_word() -> None:
    """score_inversion's own reasons (no scorer, random scorer) and the family reason read as
    before; a composition gives the data rule under its own name first, then its parts' own
    reasons."""
    inversion = ScoreInversion()
    unscored = Method(name="keep_all", description="k", family="initial")
    random_initial = Method(name="rand_init", description="r", family="initial", scorer="random")
    random_ticket = Method(name="rt", description="r", family="random", scorer="random")
    assert inversion.not_applicable(unscored, False) == "keep_all computes no scores, so there is nothing to invert"
    assert inversion.not_applicable(random_initial, False) == (
        "rand_init scores at random, and inverted random scores are random scores"
    )
    assert inversion.not_applicable(random_ticket, False) == (
        "score_inversion applies to hybrid, initial, partially_trained tickets, not random"
    )
    both = compose(RandomLabels(), ScoreInversion())
    assert both is not None
    assert both.not_applicable(random_initial, False) == (
        "rand_init does not use data to prune, so random_labels+score_inversion cannot change it"
    )
    assert both.not_applicable(random_initial, True) == (
        "rand_init scores at random, and inverted random scores are random scores"
    )


@pytest.mark.parametrize(
    "parts",
    [
        ("random_labels", "reinit"),
        ("half_dataset", "score_inversion"),
        ("score_inversion", "layerwise_rearrange"),
        ("random_pixels", "score_inversion", "layerwise_weight_shuffle"),
        ("corrupted_data", "reinit"),
    ],
)
def test_composed_stages_and_families_come_from_the_parts(parts: tuple[str, ...]) -> None:
    """A composed check's stages are the union of its parts' (from the table above) and its
    families the intersection of theirs."""
    registry = get_plugins().registry("sanity_check")
    checks = [registry.get(n)() for n in parts]
    composed = compose(*checks)
    assert composed is not None
    assert composed.stages == frozenset().union(*(BUILTIN_STAGES[n] for n in parts))
    assert composed.applies_to == frozenset.intersection(*(c.applies_to for c in checks))


def test_prune_run_draws_every_check_stage_from_one_seeded_generator() -> None:
    """A run's check generator is seeded from (seed, "check", the check's name) and shared by
    its stages in order: the pruning data first, then whatever comes after; without a check
    the run leaves data and scores as they are."""
    data = make_bundle(per_class=5)
    both = compose(RandomLabels(), Reinit())
    run = PruneRun(
        model=make_net(0), data=data, method=SPY, layers=(), density=0.5, seed=7,
        device=torch.device("cpu"), check=both,
    )  # fmt: skip
    g = make_generator(7, "check", "random_labels+reinit")
    expected = RandomLabels().perturb_data(data.train, CLASSES, g)
    assert torch.equal(run.pruning_data().y, expected.y)
    assert torch.equal(torch.rand(5, generator=run.check_rng), torch.rand(5, generator=g))
    assert run.stages == frozenset({"pruning_data", "ticket"}) and run.pruning_check == "random_labels+reinit"
    clean = PruneRun(
        model=make_net(0), data=data, method=SPY, layers=(), density=0.5, seed=7, device=torch.device("cpu")
    )
    assert clean.pruning_data() is data.train and clean.check_name == "none" and not clean.stages
    scores = {"w": torch.arange(4.0)}
    assert clean.perturbed_scores(scores, Masks({"w": torch.ones(4, dtype=torch.bool)}), before_budgets=True) is scores
