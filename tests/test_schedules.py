"""Ratio schedules: smart_ratio against the paper's rows and the authors' arithmetic, ERK by
hand, and the contract of every schedule (counts hit the target) as a hypothesis property."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunekit.layers import PrunableLayer, prunable_layers
from prunekit.pipeline import instantiate
from prunekit.plugins import get_plugins

# Keep percentages quoted in paper-spec.md (Su et al. 2020), CIFAR-10 heads.
VGG19_S90 = [100, 100, 100, 100, 100, 100, 31.77, 17.31, 11.19, 7.25, 4.66, 2.94, 1.79, 1.03, 0.54, 0.24, 30]
VGG19_S98 = [100, 100, 83.84, 26.35, 14.61, 8.70, 5.41, 3.45, 2.23, 1.45, 0.93, 0.59, 0.36, 0.20, 0.11, 0.05, 30]


def _layers(model_name: str, num_classes: int = 10) -> list[PrunableLayer]:
    get_plugins()  # registers the CIFAR models into timm
    with torch.device("meta"):
        model = timm.create_model(model_name, num_classes=num_classes)
    return prunable_layers(model)


def _schedule(name: str, **options: object):  # type: ignore[no-untyped-def]
    return instantiate("ratio_schedule", name, options)


# ------------------------------------------------------------------------------ smart ratio
@pytest.mark.parametrize(("sparsity", "row"), [(0.90, VGG19_S90), (0.98, VGG19_S98)])
def test_smart_ratio_vgg19_rows(sparsity: float, row: list[float]) -> None:
    """cifar_vgg19_bn: the keep fractions p_l are the paper's rows to 0.01 points, and every
    layer keeps ⌊p_l·N_l⌋ weights (within the rounding of the quoted row)."""
    layers = _layers("cifar_vgg19_bn")
    assert len(layers) == 17
    sr = _schedule("smart_ratio")
    fractions = sr.densities(layers, 1 - sparsity)
    counts = sr.allocate(layers, 1 - sparsity, {})
    for layer, expected in zip(layers, row):
        got = 100 * fractions[layer.name]
        assert abs(got - expected) <= 0.005 + 1e-9, (layer.name, got, expected)
        assert counts[layer.name] == math.floor(fractions[layer.name] * layer.numel + 1e-9)
        assert abs(100 * counts[layer.name] / layer.numel - expected) <= 0.005 + 100 / layer.numel


def test_smart_ratio_resnet32_row() -> None:
    """cifar_resnet32 (2× width, L = 34, projections numbered where registered) at s = 0.9:
    first conv 79.84 %, falling monotonically to 0.40 % at layer 33, classifier 30 %."""
    layers = _layers("cifar_resnet32")
    assert len(layers) == 34
    sr = _schedule("smart_ratio")
    fractions = [100 * f for f in sr.densities(layers, 0.1).values()]
    assert abs(fractions[0] - 79.84) <= 0.005
    assert abs(fractions[32] - 0.40) <= 0.005
    assert fractions[33] == pytest.approx(30.0)
    assert all(a > b for a, b in itertools.pairwise(fractions[:33]))
    # non-vgg form: p_l = γ·((L−l+1)² + (L−l+1)), so p_1 / p_33 = (34²+34) / (2²+2)
    assert fractions[0] / fractions[32] == pytest.approx(1190 / 6, rel=1e-9)


def test_smart_ratio_auto_vgg_detection() -> None:
    """Auto picks the 1/l² (vgg) form for the plain VGG chains, not for ResNets."""
    sr = _schedule("smart_ratio")
    assert sr.uses_vgg(_layers("cifar_vgg19_bn"))
    assert sr.uses_vgg(_layers("cifar_vgg16_bn"))
    assert not sr.uses_vgg(_layers("cifar_resnet32"))
    assert not sr.uses_vgg(_layers("cifar_resnet56"))
    assert _schedule("smart_ratio", vgg=False).uses_vgg(_layers("cifar_vgg19_bn")) is False


def _authors_smart_ratio(
    numel: list[int], is_linear: list[bool], sparsity: float, variant: str, vgg: bool
) -> list[int]:
    """A transcription of the authors' SmartRatio (float32 tensors, as their code computes)."""
    n = len(numel)
    num = torch.from_numpy(np.array(numel)).float()
    ratio = torch.zeros(n)
    for i in range(n):
        k = i + 1
        ratio[n - k] = k**2 + k
        if variant == "linear":
            ratio[n - k] = k
        if variant == "ascending":
            ratio[n - k] = (n - k + 1) ** 2 + (n - k + 1)
        if variant == "cubic":
            ratio[n - k] = k**3
    test = 0
    total = torch.tensor(0.0)
    linear = torch.tensor(0.0)
    for i in range(n):
        if not is_linear[i]:
            test += int(num[i] * ratio[i] / (i + 1) ** 2) if vgg else int(num[i] * ratio[i])
        else:
            linear = linear + num[i]
        total = total + num[i]
    goal = int(total * (1 - sparsity)) - int(linear * 0.3)
    balance = goal / (total - linear)
    k_ = goal / test
    for i in range(n):
        if not is_linear[i]:
            ratio[i] = ratio[i] * k_ / (i + 1) ** 2 if vgg else ratio[i] * k_
    extra = 0
    for i in range(n):
        if not is_linear[i]:
            if ratio[i] >= 1:
                extra = extra + int((ratio[i] - 1) * num[i])
                ratio[i] = 1
            else:
                rest = int((1 - ratio[i]) * num[i])
                if rest >= extra:
                    ratio[i] = ratio[i] + extra / num[i]
                    extra = 0
                else:
                    extra = extra - rest
                    ratio[i] = 1
        if extra == 0:
            break
    out = []
    for i in range(n):
        keep = int(ratio[i] * num[i]) if ratio[i] < 1 else int(num[i])
        if variant == "balanced":
            keep = int(balance * num[i])
        if is_linear[i]:
            keep = int(0.3 * num[i])
        out.append(keep)
    return out


@pytest.mark.parametrize("variant", ["quadratic", "linear", "cubic", "ascending", "balanced"])
@pytest.mark.parametrize(("model_name", "vgg"), [("cifar_vgg19_bn", True), ("cifar_resnet32", False)])
@pytest.mark.parametrize("sparsity", [0.9, 0.95, 0.98])
def test_smart_ratio_matches_authors_code(variant: str, model_name: str, vgg: bool, sparsity: float) -> None:
    """Every variant keeps the counts of the authors' code within one weight per layer (their
    float32 arithmetic rounds a little differently)."""
    layers = _layers(model_name)
    numel = [layer.numel for layer in layers]
    expected = _authors_smart_ratio(numel, [layer.kind == "linear" for layer in layers], sparsity, variant, vgg)
    assert abs(sum(expected) - int(sum(numel) * (1 - sparsity))) <= len(layers)  # it hits its target
    got = _schedule("smart_ratio", variant=variant).allocate(layers, 1 - sparsity, {})
    assert [abs(g - e) <= 1 for g, e in zip(got.values(), expected)] == [True] * len(layers)


def test_smart_ratio_variants_differ_by_formula() -> None:
    """On three conv layers of 1000 weights (non-vgg) the variants' keep fractions follow
    their q: quadratic 20:12:6, linear 4:3:2, cubic 64:27:8, ascending 2:6:12, balanced equal."""
    layers = [
        PrunableLayer(name=f"c{i}.weight", module=f"c{i}", kind="conv", shape=(10, 10, 10), index=i)
        for i in range(3)
    ] + [PrunableLayer(name="fc.weight", module="fc", kind="linear", shape=(10, 100), index=3)]
    ratios = {
        "quadratic": (20, 12, 6),
        "linear": (4, 3, 2),
        "cubic": (64, 27, 8),
        "ascending": (2, 6, 12),
        "balanced": (1, 1, 1),
    }
    for variant, q in ratios.items():
        f = list(_schedule("smart_ratio", variant=variant, vgg=False).densities(layers, 0.1).values())
        # K = 400 - 300 = 100 weights over 3 × 1000 in proportion q
        for got, qq in zip(f[:3], q):
            assert got == pytest.approx(100 * qq / (1000 * sum(q)), rel=1e-12), variant
        assert f[3] == pytest.approx(0.3)


# ------------------------------------------------------------------------------------- ERK
def _linear(name: str, out_f: int, in_f: int, index: int) -> PrunableLayer:
    return PrunableLayer(name=name, module=name, kind="linear", shape=(out_f, in_f), index=index)


def test_erk_densities_by_hand() -> None:
    """A (10×10, raw 0.2) and B (100×100, raw 0.02) at density 0.5: ε = 5050/220 makes A
    exceed 1, so A is dense and ε = 4950/200 gives B 0.495 (4950 weights)."""
    layers = [_linear("a", 10, 10, 0), _linear("b", 100, 100, 1)]
    erk = _schedule("erk")
    d = erk.densities(layers, 0.5)
    assert d == {"a": 1.0, "b": pytest.approx(0.495, rel=1e-12)}
    assert erk.allocate(layers, 0.5, {}) == {"a": 100, "b": 4950}


def test_erk_proportional_without_clipping() -> None:
    """Without clipping, densities are proportional to (Σ dims / Π dims)^power and add up to
    the target; power 0 gives uniform densities."""
    layers = [_linear("a", 40, 50, 0), _linear("b", 60, 80, 1), _linear("c", 30, 90, 2)]
    raw = [90 / 2000, 140 / 4800, 120 / 2700]
    d = list(_schedule("erk").densities(layers, 0.02).values())
    for i in range(3):
        assert d[i] / d[0] == pytest.approx(raw[i] / raw[0], rel=1e-12)
    assert sum(di * layer.numel for di, layer in zip(d, layers)) == pytest.approx(0.02 * 9500, rel=1e-12)
    assert list(_schedule("erk", power_scale=0.0).densities(layers, 0.3).values()) == pytest.approx([0.3] * 3)


# ---------------------------------------------------------------------- the common contract
@st.composite
def layer_lists(draw):  # type: ignore[no-untyped-def]
    n_conv = draw(st.integers(0, 6))
    layers = []
    c_in = draw(st.integers(1, 8))
    for i in range(n_conv):
        c_out = draw(st.integers(1, 24))
        k = draw(st.sampled_from([1, 3]))
        layers.append(
            PrunableLayer(
                name=f"conv{i}.weight", module=f"conv{i}", kind="conv", shape=(c_out, c_in, k, k), index=i
            )
        )
        c_in = c_out if draw(st.booleans()) else draw(st.integers(1, 24))
    if n_conv == 0 or draw(st.booleans()):
        layers.append(_linear("fc.weight", draw(st.integers(1, 20)), draw(st.integers(1, 64)), n_conv))
    return layers


SCHEDULES = [
    ("global", {}),
    ("uniform", {}),
    ("erk", {}),
    ("erk", {"power_scale": 0.5}),
    *[("smart_ratio", {"variant": v}) for v in ("quadratic", "linear", "cubic", "ascending", "balanced")],
    ("smart_ratio", {"vgg": True}),
    ("smart_ratio", {"vgg": False, "linear_keep_ratio": 0.9}),
]


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=layer_lists(), density=st.floats(0.0005, 1.0), seed=st.integers(0, 2**16))
def test_every_schedule_hits_the_target(layers: list[PrunableLayer], density: float, seed: int) -> None:
    """For random layer lists and densities, every schedule's counts lie in 0..numel and add up
    to round(density · total) within one weight per layer."""
    g = torch.Generator().manual_seed(seed)
    scores = {layer.name: torch.rand(layer.shape, generator=g) for layer in layers}
    total = sum(layer.numel for layer in layers)
    for name, options in SCHEDULES:
        counts = _schedule(name, **options).allocate(layers, density, scores)
        assert set(counts) == {layer.name for layer in layers}
        for layer in layers:
            assert 0 <= counts[layer.name] <= layer.numel, (name, options)
        assert abs(sum(counts.values()) - round(density * total)) <= len(layers), (name, options)


def test_density_one_keeps_everything() -> None:
    """At density 1 every schedule keeps every weight."""
    layers = _layers("cifar_resnet32")
    scores = {layer.name: torch.ones(layer.shape, device="meta") for layer in layers}
    for name, options in SCHEDULES:
        if name == "global":
            continue  # needs real scores; its k >= total shortcut is checked below
        counts = _schedule(name, **options).allocate(layers, 1.0, scores)
        assert counts == {layer.name: layer.numel for layer in layers}, (name, options)
    assert _schedule("global").allocate(layers, 1.0, scores) == {layer.name: layer.numel for layer in layers}


def test_global_keeps_exactly_the_asked_count_with_ties() -> None:
    """global keeps exactly round(density · total): weights above the threshold first, then the
    tied ones shared among the layers in proportion to their tied weights."""
    layers = [_linear("a", 2, 2, 0), _linear("b", 2, 2, 1)]
    scores = {"a": torch.tensor([[4.0, 1.0], [1.0, 1.0]]), "b": torch.tensor([[3.0, 0.0], [0.0, 0.0]])}
    # 3 of 8: 4 and 3 are above the threshold 1; one of a's three 1s fills the budget
    assert _schedule("global").allocate(layers, 3 / 8, scores) == {"a": 2, "b": 1}
    assert _schedule("global").allocate(layers, 2 / 8, scores) == {"a": 1, "b": 1}
    # 6 of 8: 4, 3 and every 1 above the threshold 0; b holds all three tied 0s: 1 of them
    assert _schedule("global").allocate(layers, 6 / 8, scores) == {"a": 4, "b": 2}
    # all-zero scores in layers of 6 and 2 weights, 4 kept: shares 3 and 1
    zeros = [_linear("a", 2, 3, 0), _linear("b", 1, 2, 1)]
    flat = {"a": torch.zeros(2, 3), "b": torch.zeros(1, 2)}
    assert _schedule("global").allocate(zeros, 0.5, flat) == {"a": 3, "b": 1}


def test_global_exact_when_almost_every_score_is_zero() -> None:
    """15 of 16 scores exactly 0 (as SNIP on a timm ResNet with zero-initialised last BN): the
    count is exactly round(0.1 · total), every non-zero score is kept, and the zeros fill the
    rest in proportion to each layer's zeros (within one weight)."""
    layers = [_linear("a", 100, 100, 0), _linear("b", 100, 50, 1), _linear("fc", 10, 100, 2)]
    g = torch.Generator().manual_seed(0)
    scores = {layer.name: torch.zeros(layer.shape) for layer in layers}
    scores["fc"] = torch.rand(10, 100, generator=g) + 0.1  # 1,000 positive scores
    counts = _schedule("global").allocate(layers, 0.1, scores)
    assert sum(counts.values()) == 1600  # round(0.1 · 16,000)
    assert counts["fc"] == 1000
    # the 600 remaining come from 15,000 zeros: 10,000 in a, 5,000 in b
    assert counts["a"] == 400 and counts["b"] == 200


@settings(max_examples=60, deadline=None, database=None)
@given(tied=st.lists(st.integers(0, 50), min_size=1, max_size=8), data=st.data())
def test_share_ties_is_exact_and_proportional(tied: list[int], data) -> None:  # type: ignore[no-untyped-def]
    """Shares of the tied weights add up to the wanted count, never exceed a group and lie
    within one weight of the proportional share."""
    from prunekit_plugins.schedules import share_ties

    wanted = data.draw(st.integers(0, sum(tied)))
    shares = share_ties(tied, wanted)
    assert sum(shares) == wanted
    for share, t in zip(shares, tied):
        assert 0 <= share <= t
        assert abs(share - wanted * t / max(1, sum(tied))) < 1


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=layer_lists(), density=st.floats(0.0005, 1.0), seed=st.integers(0, 2**16), levels=st.integers(1, 3))
def test_every_schedule_hits_the_target_with_tied_scores(
    layers: list[PrunableLayer], density: float, seed: int, levels: int
) -> None:
    """With scores drawn from 1 to 3 values (ties everywhere), global keeps exactly
    round(density · total) and every other schedule stays within one weight per layer."""
    g = torch.Generator().manual_seed(seed)
    scores = {layer.name: torch.randint(0, levels, layer.shape, generator=g).float() for layer in layers}
    total = sum(layer.numel for layer in layers)
    for name, options in SCHEDULES:
        counts = _schedule(name, **options).allocate(layers, density, scores)
        if name == "global":
            assert sum(counts.values()) == round(density * total)
        assert abs(sum(counts.values()) - round(density * total)) <= len(layers), (name, options)


@pytest.mark.parametrize("rounding", ["floor", "round", "ceil"])
def test_smart_ratio_rounding(rounding: str) -> None:
    """smart_ratio's rounding option: every layer keeps ⌊p_l·N_l⌋, round(p_l·N_l) or ⌈p_l·N_l⌉
    of its own fractions, within one weight per layer of the target; floor is the default
    (today's counts) and is left out of result identities."""
    import attrs

    from prunekit.identity import NOOP_DEFAULT
    from prunekit_plugins.schedules import SmartRatio

    layers = _layers("cifar_resnet32")
    rounder = {"floor": math.floor, "round": round, "ceil": math.ceil}[rounding]
    sr = _schedule("smart_ratio", rounding=rounding)
    fractions = sr.densities(layers, 0.1)
    counts = sr.allocate(layers, 0.1, {})
    for layer in layers:
        exact = fractions[layer.name] * layer.numel
        nearest = round(exact)
        expected = nearest if abs(exact - nearest) < 1e-9 * max(1, exact) else rounder(exact)
        assert counts[layer.name] == expected, layer.name
    total = sum(layer.numel for layer in layers)
    assert abs(sum(counts.values()) - round(0.1 * total)) <= len(layers)
    assert _schedule("smart_ratio").allocate(layers, 0.1, {}) == _schedule("smart_ratio", rounding="floor").allocate(layers, 0.1, {})
    assert attrs.fields(SmartRatio).rounding.metadata[NOOP_DEFAULT] is True
    if rounding != "floor":
        assert counts != _schedule("smart_ratio").allocate(layers, 0.1, {})


def test_smart_ratio_rejects_an_unknown_rounding() -> None:
    """An unknown rounding is a one-line error naming the option."""
    from prunekit.errors import PrunekitError

    with pytest.raises(PrunekitError, match="rounding"):
        _schedule("smart_ratio", rounding="up")


def test_schedules_are_registered() -> None:
    """The four schedules are registered by the built-in plugin, with descriptions."""
    reg = get_plugins().registry("ratio_schedule")
    for name in ("global", "uniform", "erk", "smart_ratio"):
        assert reg.describe(name)
