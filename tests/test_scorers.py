"""SNIP, GraSP and SynFlow against independent computations, the model left untouched, and bad
input through the pipeline."""

from __future__ import annotations

import copy
import itertools

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.data import ArrayData, DataBundle, scoring_batches
from prunekit.errors import PrunekitError
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import Method, Scorer, ScoringContext
from prunekit.layers import prunable_layers
from prunekit.masks import Masks
from prunekit.pipeline import prune
from prunekit.plugins import get_plugins, register_plugin
from prunekit_plugins.grasp import Grasp
from prunekit_plugins.snip import Snip, model_depth
from prunekit_plugins.synflow import SynFlow

from .conftest import tiny_convnet


# ------------------------------------------------------------------------------- helpers
def _ctx(  # type: ignore[no-untyped-def]
    model: nn.Module, batches, input_shape=(1, 6, 6), num_classes=4, seed=0
) -> ScoringContext:
    layers = tuple(prunable_layers(model))
    return ScoringContext(
        layers=layers,
        masks=Masks.ones(model, [layer.name for layer in layers]),
        batches=tuple(batches),
        input_shape=input_shape,
        num_classes=num_classes,
        seed=seed,
        device=torch.device("cpu"),
    )


def _batches(n_batches=2, per_class=3, num_classes=4, dtype=torch.float32, seed=1):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randn(per_class * num_classes, 1, 6, 6, generator=g, dtype=dtype)
        y = torch.arange(num_classes).repeat_interleave(per_class)
        out.append((x, y))
    return out


def _bundle(num_classes=4, per_class=12, shape=(1, 6, 6), seed=0) -> DataBundle:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    n = num_classes * per_class
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.arange(num_classes).repeat(per_class)
    data = ArrayData(x=x, y=y)
    c = shape[0]
    return DataBundle(name="synthetic", train=data, test=data, num_classes=num_classes, mean=(0.5,) * c, std=(0.25,) * c)


def _snapshot(model: nn.Module) -> dict[str, object]:
    """Raw bytes of every parameter and buffer, dtypes, storages, grads and module modes."""
    return {
        "tensors": {
            n: (t.dtype, t.detach().clone().view(torch.uint8) if t.is_floating_point() else t.clone())
            for n, t in model.state_dict(keep_vars=True).items()
        },
        "ptrs": {n: p.data_ptr() for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
    }


def _assert_unchanged(model: nn.Module, before: dict[str, object]) -> None:
    after = _snapshot(model)
    for name, (dtype, raw) in before["tensors"].items():  # type: ignore[attr-defined]
        dtype2, raw2 = after["tensors"][name]  # type: ignore[index]
        assert dtype2 == dtype, name
        assert torch.equal(raw2, raw), f"{name} changed"
    assert after["ptrs"] == before["ptrs"]
    for name, g in before["grads"].items():  # type: ignore[attr-defined]
        g2 = after["grads"][name]  # type: ignore[index]
        assert (g is None and g2 is None) or (g is not None and g2 is not None and torch.equal(g, g2)), name
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]


def _method(scorer: str, rounds: int = 1, **options: object) -> Method:
    return Method(
        name=f"test_{scorer}",
        description="test",
        family="initial",
        scorer=scorer,
        rounds=rounds,
        scorer_options=options,
    )


# ------------------------------------------------------------------------------------ SNIP
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_snip_equals_theta_times_gradient(bn_mode: str) -> None:
    """SNIP = |θ·∂L/∂θ| with L the cross-entropy summed over the batches, from a separate
    autograd call on a copy in the same BatchNorm mode."""
    model = tiny_convnet()
    batches = _batches()
    reference = copy.deepcopy(model).train(bn_mode == "train")
    loss = sum(F.cross_entropy(reference(x), y) for x, y in batches)
    loss.backward()  # type: ignore[union-attr]
    expected = {
        n: (p.detach() * p.grad).abs()
        for n, p in reference.named_parameters()
        if n.endswith("weight") and p.ndim > 1
    }
    scores = Snip(bn_mode=bn_mode).score(model, _ctx(model, batches))  # type: ignore[arg-type]
    assert set(scores) == set(expected)
    for name, s in scores.items():
        torch.testing.assert_close(s, expected[name], rtol=1e-5, atol=1e-9)


def test_snip_leaves_model_unchanged() -> None:
    """After SNIP (train-mode BN) weights, BN running stats, grads, requires_grad and every
    module's mode are exactly as before."""
    model = tiny_convnet()
    model.eval()
    model[1].train()  # a mixed state must come back as it was
    model[0].weight.grad = torch.full_like(model[0].weight, 0.5)
    model[3].weight.requires_grad_(False)
    before = _snapshot(model)
    Snip().score(model, _ctx(model, _batches()))
    Snip(xavier_copy=True).score(model, _ctx(model, _batches()))
    _assert_unchanged(model, before)


def test_snip_scores_frozen_weights_and_masked_positions() -> None:
    """A frozen weight is scored like any other; a masked (zero) weight scores 0."""
    model = tiny_convnet()
    with torch.no_grad():
        model[3].weight[0].zero_()
    model[3].weight.requires_grad_(False)
    scores = Snip().score(model, _ctx(model, _batches()))
    assert float(scores["3.weight"][0].abs().sum()) == 0.0
    assert float(scores["3.weight"][1:].sum()) > 0


def test_snip_xavier_copy_scores_other_weights() -> None:
    """xavier_copy scores re-drawn weights (different scores, same seed → same scores)."""
    model = tiny_convnet()
    ctx = _ctx(model, _batches())
    plain = Snip().score(model, ctx)
    redrawn = Snip(xavier_copy=True).score(model, ctx)
    again = Snip(xavier_copy=True).score(model, ctx)
    assert not torch.allclose(plain["0.weight"], redrawn["0.weight"])
    for name in redrawn:
        assert torch.equal(redrawn[name], again[name])


def _meta_model(name: str, num_classes: int = 10) -> nn.Module:
    get_plugins()
    with torch.device("meta"):
        return timm.create_model(name, num_classes=num_classes)


def test_snip_batch_rule() -> None:
    """auto: 10 per class × 1 for VGG19 and ResNet32 (depth 32), 1 per class × 10 for ResNet56
    (depth 56) and for 200 classes; explicit rules and overrides win."""
    ten = _bundle(num_classes=10, per_class=1)
    many = _bundle(num_classes=200, per_class=1)
    vgg, r32, r56 = _meta_model("cifar_vgg19_bn"), _meta_model("cifar_resnet32"), _meta_model("cifar_resnet56")
    assert (model_depth(vgg), model_depth(r32), model_depth(r56)) == (17, 32, 56)

    def req(model: nn.Module, data: DataBundle, **options: object) -> tuple[int, int]:
        r = Snip(**options).data_request(model, data)  # type: ignore[arg-type]
        return r.samples_per_class, r.iterations

    assert req(vgg, ten) == (10, 1)
    assert req(r32, ten) == (10, 1)
    assert req(r56, ten) == (1, 10)
    assert req(vgg, many) == (1, 10)
    assert req(r56, ten, batch_rule="single") == (10, 1)
    assert req(vgg, ten, batch_rule="split") == (1, 10)
    assert req(vgg, ten, samples_per_class=4, iterations=3) == (4, 3)
    assert Grasp().data_request(r56, ten).iterations == 10


# ----------------------------------------------------------------------------------- GraSP
def _grasp_gradient(  # type: ignore[no-untyped-def]
    net: nn.Module, names: list[str], thetas: list[torch.Tensor], batches, temperature: float
) -> list[torch.Tensor]:
    """Σ over half batches of ∂L_h/∂θ at ``thetas`` (functional, so θ can be moved)."""
    params = dict(zip(names, thetas))
    total = [torch.zeros_like(t) for t in thetas]
    for x, y in batches:
        n = x.shape[0] // 2
        for xs, ys in ((x[:n], y[:n]), (x[n:], y[n:])):
            out = torch.func.functional_call(net, params, (xs,), strict=False)
            loss = F.cross_entropy(out / temperature, ys)
            g = torch.autograd.grad(loss, thetas)
            total = [a + b for a, b in zip(total, g)]
    return total


def test_grasp_hg_matches_finite_differences() -> None:
    """GraSP's score equals θ ⊙ Hg with Hg = (∇L(θ+εg) − ∇L(θ−εg)) / 2ε computed in float64 on
    the same scoring copy (Xavier-normal Linear, T = 200, half-batch split)."""
    model = tiny_convnet().double()
    batches = _batches(dtype=torch.float64)
    ctx = _ctx(model, batches)
    scorer = Grasp()
    net = scorer.scoring_copy(model, ctx)
    # the copy: Linear re-drawn, convs as in the model, the model itself untouched
    assert not torch.equal(net[7].weight, model[7].weight)
    assert torch.equal(net[0].weight, model[0].weight)
    names = [layer.name for layer in ctx.layers]
    params = dict(net.named_parameters())
    theta = [params[n].detach().clone().requires_grad_(True) for n in names]
    g = [t.detach() for t in _grasp_gradient(net, names, theta, batches, 200.0)]
    norm = torch.sqrt(sum((t * t).sum() for t in g))
    eps = 1e-4 / float(norm)
    plus = [(t + eps * d).detach().requires_grad_(True) for t, d in zip(theta, g)]
    minus = [(t - eps * d).detach().requires_grad_(True) for t, d in zip(theta, g)]
    gp = _grasp_gradient(net, names, plus, batches, 200.0)
    gm = _grasp_gradient(net, names, minus, batches, 200.0)
    hg = [(a - b) / (2 * eps) for a, b in zip(gp, gm)]

    before = _snapshot(model)
    scores = scorer.score(model, ctx)
    _assert_unchanged(model, before)
    for name, t, h in zip(names, theta, hg):
        expected = t.detach() * h.detach()
        scale = float(expected.abs().max())
        torch.testing.assert_close(scores[name], expected, rtol=1e-5, atol=1e-6 * scale)
    # the temperature matters: T = 1 gives other scores
    other = Grasp(temperature=1.0).score(model, ctx)
    assert not torch.allclose(other[names[0]], scores[names[0]])


def _reference_grasp(  # type: ignore[no-untyped-def]
    net: nn.Module, names: list[str], batches, temperature: float
) -> dict[str, torch.Tensor]:
    """−θ ⊙ Hg written as the reference code does it: pass 1 sums the half-batch gradients,
    pass 2 forwards every half again and back-propagates z = g · ∇L_h into .grad."""
    params = dict(net.named_parameters())
    weights = [params[n] for n in names]
    for p in net.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
    halves = []
    for x, y in batches:
        n = x.shape[0] // 2
        halves += [(x[:n], y[:n]), (x[n:], y[n:])]
    grad_w = None
    for x, y in halves:
        g = torch.autograd.grad(F.cross_entropy(net(x) / temperature, y), weights)
        grad_w = list(g) if grad_w is None else [a + b for a, b in zip(grad_w, g)]
    for x, y in halves:
        grad_f = torch.autograd.grad(F.cross_entropy(net(x) / temperature, y), weights, create_graph=True)
        z = sum((gw.detach() * gf).sum() for gw, gf in zip(grad_w, grad_f))  # type: ignore[arg-type]
        z.backward()  # type: ignore[union-attr]
    return {n: -(w.detach() * w.grad) for n, w in zip(names, weights)}  # type: ignore[operator]


def test_grasp_pipeline_keeps_lowest_minus_theta_hg() -> None:
    """prune(Method(scorer='grasp')) keeps exactly the weights with the lowest −θ·Hg (global),
    −θ·Hg computed independently in float64 on the same copy and scoring batch."""
    data = _bundle()
    model = tiny_convnet()
    scorer = Grasp()
    request = scorer.data_request(model, data)
    assert (request.samples_per_class, request.iterations) == (10, 1)
    batches = scoring_batches(data, request, 0, torch.device("cpu"))
    ctx = _ctx(model, batches)
    net = scorer.scoring_copy(model, ctx).double()
    names = [layer.name for layer in ctx.layers]
    s = _reference_grasp(net, names, [(x.double(), y) for x, y in batches], 200.0)

    sparsity = 0.6
    outcome = prune(copy.deepcopy(model), data, _method("grasp"), sparsity, seed=0)
    flat = torch.cat([s[n].flatten() for n in names])
    k = round((1 - sparsity) * flat.numel())
    ordered = torch.sort(flat).values
    threshold = ordered[k - 1]
    assert float(ordered[k] - threshold) > 1e-6 * float(flat.abs().max())  # no near-tie at the cut
    for n in names:
        assert torch.equal(outcome.masks[n], s[n] <= threshold), n


# --------------------------------------------------------------------------------- SynFlow
def _chain(sizes: list[int], seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b, bias=False))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def test_synflow_closed_form_and_conservation() -> None:
    """On a bias-free ReLU chain, score_l = |W_l| ⊙ (1ᵀ|W_L|…|W_{l+1}|)ᵀ (|W_{l−1}|…|W_1| 1)ᵀ,
    and every layer's total score equals R = 1ᵀ|W_L|…|W_1|1 (synaptic flow conservation)."""
    model = _chain([12, 9, 7, 3])
    ctx = _ctx(model, [], input_shape=(3, 2, 2))
    scores = SynFlow(precision="float64").score(model, ctx)
    ws = [m.weight.detach().double().abs() for m in model if isinstance(m, nn.Linear)]
    r = torch.ones(1, 3, dtype=torch.float64) @ ws[2] @ ws[1] @ ws[0] @ torch.ones(12, 1, dtype=torch.float64)
    for i, (name, w) in enumerate(zip([layer.name for layer in ctx.layers], ws)):
        left = torch.ones(1, ws[-1].shape[0], dtype=torch.float64)
        for v in reversed(ws[i + 1 :]):
            left = left @ v
        right = torch.ones(ws[0].shape[1], 1, dtype=torch.float64)
        for v in ws[:i]:
            right = v @ right
        expected = w * (left.T @ right.T)
        assert scores[name].dtype == torch.float64
        torch.testing.assert_close(scores[name], expected, rtol=1e-12, atol=0)
        assert float(scores[name].sum()) == pytest.approx(float(r), rel=1e-6)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_synflow_restores_the_model_bit_for_bit(precision: str) -> None:
    """SynFlow (either precision) runs on the model itself but leaves parameters (signs, −0.0,
    dtype, storage), BN buffers, grads and modes exactly as they were."""
    model = tiny_convnet()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = -0.0
        model[1].running_mean.uniform_(-1, 1)
        model[1].bias.uniform_(-1, 1)
    model.train()
    model[7].weight.grad = torch.ones_like(model[7].weight)
    before = _snapshot(model)
    scores = SynFlow(precision=precision).score(model, _ctx(model, []))  # type: ignore[arg-type]
    _assert_unchanged(model, before)
    assert all(torch.isfinite(s).all() and (s >= 0).all() for s in scores.values())


def test_synflow_iterative_differs_from_one_shot() -> None:
    """100 rounds through prune (masks applied between rounds) give other masks than one
    round at 99 % sparsity, both at the target density."""
    data = _bundle(shape=(1, 4, 4))
    model = _chain([16, 64, 64, 4], seed=3)
    one = prune(copy.deepcopy(model), data, _method("synflow", rounds=1), 0.99, allow_collapse=True)
    many = prune(copy.deepcopy(model), data, _method("synflow", rounds=100), 0.99, allow_collapse=True)
    total = one.masks.total()
    assert abs(one.masks.kept() - round(0.01 * total)) <= 3
    assert abs(many.masks.kept() - round(0.01 * total)) <= 3
    assert not one.masks.equals(many.masks)
    # iterative SynFlow avoids layer collapse at this sparsity
    assert min(many.masks.layer_kept().values()) > 0


# ------------------------------------------------------------------------------- bad input
@pytest.fixture
def nan_scorer():  # type: ignore[no-untyped-def]
    class NanScorer(Scorer):
        name = "nan_scorer"
        description = "returns NaN for the second layer"
        needs_data = False

        def score(self, model, ctx):  # type: ignore[no-untyped-def]
            out = {layer.name: torch.rand(layer.shape) for layer in ctx.layers}
            out[ctx.layers[1].name][0] = float("nan")
            return out

    class Plugin:
        @hookimpl
        def register_scorers(self, register):  # type: ignore[no-untyped-def]
            register(NanScorer)

    register_plugin(Plugin(), "nan_plugin")
    return "nan_scorer"


def test_nan_scores_name_the_layer(nan_scorer: str) -> None:
    """A scorer returning NaN stops prune with a PrunekitError naming the layer."""
    with pytest.raises(PrunekitError, match=r"non-finite.*layer 3\.weight"):
        prune(tiny_convnet(), _bundle(), _method(nan_scorer), 0.5)


@pytest.mark.parametrize("scorer", ["snip", "grasp", "synflow"])
def test_sparsity_zero_keeps_everything(scorer: str) -> None:
    """Sparsity 0 keeps every weight (and leaves the weights as they were)."""
    model = tiny_convnet()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    outcome = prune(model, _bundle(), _method(scorer), 0.0)
    assert outcome.masks.density() == 1.0
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_model_without_prunable_parameters() -> None:
    """A model without Conv/Linear weights gives a clear PrunekitError."""
    model = nn.Sequential(nn.Flatten(), nn.ReLU())
    with pytest.raises(PrunekitError, match="no prunable parameters"):
        prune(model, _bundle(), _method("snip"), 0.5)


def test_scorers_are_registered() -> None:
    """snip, grasp and synflow are registered with descriptions; synflow is data-free."""
    reg = get_plugins().registry("scorer")
    assert reg.get("snip") is Snip and reg.get("grasp") is Grasp and reg.get("synflow") is SynFlow
    assert SynFlow.needs_data is False and Snip.needs_data and Grasp.needs_data


def test_grasp_fast_batch_norm_double_backward_matches_pytorch() -> None:
    """The scoring copy's BatchNorm (hand-derived second derivative) gives the same output, first
    derivative and both second derivatives (w.r.t. the input and the upstream gradient) as
    PyTorch's train-mode batch_norm, in float64, with and without affine parameters."""
    from prunekit_plugins.grasp import _FastBatchNorm

    g = torch.Generator().manual_seed(0)
    for affine in (True, False):
        bn = nn.BatchNorm2d(3, affine=affine).double()
        if affine:
            with torch.no_grad():
                bn.weight.uniform_(0.5, 1.5, generator=g)
                bn.bias.uniform_(-1, 1, generator=g)
            bn.requires_grad_(False)
        fast = _FastBatchNorm(bn)
        x = torch.randn(4, 3, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
        u = torch.randn(4, 3, 5, 5, dtype=torch.float64, generator=g, requires_grad=True)
        v = torch.randn(4, 3, 5, 5, dtype=torch.float64, generator=g)
        results = []
        for fn in (fast, lambda t, bn=bn: F.batch_norm(t, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)):
            y = fn(x)
            (gx,) = torch.autograd.grad((y * u).sum(), x, create_graph=True)
            hx, hu = torch.autograd.grad((gx * v).sum(), (x, u))
            results.append((y, gx, hx, hu))
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_a_scorer_that_changes_the_weights_fails_with_its_plugin_name() -> None:
    """A plugin scorer that scales the weights in place (or permutes them) is caught by the
    pipeline's checksum: one line naming the scorer and its plugin, no mask."""
    import attrs as _attrs

    from prunekit import hookimpl
    from prunekit.errors import PrunekitError
    from prunekit.interfaces import Method, Scorer
    from prunekit.pipeline import build_model, load_dataset, prune
    from prunekit.plugins import get_plugins, register_plugin, unregister_plugin

    class Scaling(Scorer):
        name = "scaling"
        description = "scales the weights in place"
        needs_data = False

        def score(self, model, ctx):  # type: ignore[no-untyped-def]
            params = dict(model.named_parameters())
            with torch.no_grad():
                params[ctx.layers[0].name].mul_(2.0)
            return {layer.name: params[layer.name].detach().abs() for layer in ctx.layers}

    class Permuting(Scaling):
        name = "permuting"
        description = "reverses a layer's weights in place"

        def score(self, model, ctx):  # type: ignore[no-untyped-def]
            params = dict(model.named_parameters())
            with torch.no_grad():
                w = params[ctx.layers[0].name]
                w.copy_(w.flatten().flip(0).view_as(w))
            return {layer.name: params[layer.name].detach().abs() for layer in ctx.layers}

    class Plugin:
        __version__ = "9.9"

        @hookimpl
        def register_scorers(self, register):  # type: ignore[no-untyped-def]
            register(_attrs.frozen(Scaling))
            register(_attrs.frozen(Permuting))

    register_plugin(Plugin(), "mutating_plugin")
    try:
        data = load_dataset("digits")
        for name in ("scaling", "permuting"):
            method = Method(name=name, description="x", family="initial", scorer=name)
            model = build_model("digits_mlp", data, 0)
            with pytest.raises(PrunekitError, match=rf"scorer '{name}' \(mutating_plugin 9.9\) changed the model"):
                prune(model, data, method, 0.9, seed=0)
        assert "scaling" in get_plugins().registry("scorer")
    finally:
        unregister_plugin("mutating_plugin")


def test_scoring_runs_without_tf32_and_restores_the_settings() -> None:
    """cuDNN convolutions default to TF32 on recent GPUs, which moved ~1.5% of a 90% SNIP mask
    against the CPU's (gpu_check on an H100): the pipeline scores every scorer with IEEE float32
    convolutions and matmuls and puts the user's settings back afterwards."""
    import attrs as _attrs

    from prunekit.pipeline import build_model, load_dataset
    from prunekit.plugins import unregister_plugin

    seen: list[tuple[str, str]] = []

    class Watching(Scorer):
        name = "watching"
        description = "records the float32 precision it scores at"
        needs_data = False

        def score(self, model, ctx):  # type: ignore[no-untyped-def]
            seen.append((torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision))
            params = dict(model.named_parameters())
            return {layer.name: params[layer.name].detach().abs() for layer in ctx.layers}

    class Plugin:
        @hookimpl
        def register_scorers(self, register):  # type: ignore[no-untyped-def]
            register(_attrs.frozen(Watching))

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    register_plugin(Plugin(), "watching_plugin")
    try:
        conv.fp32_precision, matmul.fp32_precision = "tf32", "tf32"
        data = load_dataset("digits")
        method = Method(name="watching", description="x", family="initial", scorer="watching", rounds=2)
        prune(build_model("digits_cnn", data, 0), data, method, 0.9, seed=0)
        assert seen == [("ieee", "ieee")] * 2
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        conv.fp32_precision, matmul.fp32_precision = before
        unregister_plugin("watching_plugin")
