"""SynFlow in float32: rescaled at the graph's cuts, its scores are the float64 scores times one
positive constant (biases and BatchNorm included), and it falls back to float64 where the
rescaling is not provably exact or a float32 pass is still not finite."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import attrs
import pytest
import torch
from torch import nn

from prunekit.data import ArrayData, DataBundle
from prunekit.interfaces import ScoringContext
from prunekit.layers import prunable_layers
from prunekit.masks import Masks
from prunekit.pipeline import build_model, prune, resolve_method
from prunekit.plugins import get_plugins
from prunekit_plugins.synflow import SynFlow, scaling_plan

FLOAT32_MAX = torch.finfo(torch.float32).max


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small nets score faster on one thread, and a busy machine does not stall its barriers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ctx(model: nn.Module, input_shape: tuple[int, ...]) -> ScoringContext:
    layers = tuple(prunable_layers(model))
    return ScoringContext(
        layers=layers,
        masks=Masks.ones(model, [layer.name for layer in layers]),
        batches=(),
        input_shape=input_shape,
        num_classes=10,
        seed=0,
        device=torch.device("cpu"),
    )


def _both(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    ctx = _ctx(model, input_shape)
    return SynFlow(precision="float32").score(model, ctx), SynFlow(precision="float64").score(model, ctx)


def _ratio_spread(s32: dict[str, torch.Tensor], s64: dict[str, torch.Tensor]) -> float:
    """Largest relative deviation of s32 / s64 from its median over all nonzero scores."""
    ratios = torch.cat([(s32[n].double() / s64[n])[s64[n] > 0].flatten() for n in s64])
    return float((ratios / ratios.median() - 1).abs().max())


def _deep_chain(depth: int = 30, width: int = 64, seed: int = 0) -> nn.Sequential:
    """Bias-free ReLU chain with N(0, 1) weights: R grows ≈ (0.8·width)^depth ≈ 1e51 here."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers.append(nn.Linear(width, width, bias=False))
        nn.init.normal_(layers[-1].weight)
        if i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN (convs with bias) plus an identity or 1×1 conv + BN shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout)) if cin != cout else None
        self.act2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.short is None else self.short(x)
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))) + shortcut)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(*[Block(16, 16) for _ in range(4)], Block(16, 32), *[Block(32, 32) for _ in range(4)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act(self.bn(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _trained_look(model: nn.Module, seed: int = 0) -> nn.Module:
    """Large weights (so R passes float32's range) and BatchNorm statistics, β and biases as
    after training: nonzero, of both signs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, 1.0, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-1.0, 1.0, generator=g)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1.0, 1.0, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-1.0, 1.0, generator=g)
    return model


def test_bias_free_chain_past_float32_range() -> None:
    """On a 30-layer bias-free chain whose float64 scores pass float32's range, the float32
    scores are finite float32 tensors equal to the float64 ones times one constant (1e-5)."""
    model = _deep_chain()
    s32, s64 = _both(model, (64,))
    assert max(float(s.max()) for s in s64.values()) > FLOAT32_MAX
    assert all(s.dtype == torch.float32 and bool(torch.isfinite(s).all()) for s in s32.values())
    assert _ratio_spread(s32, s64) < 1e-5


def test_residual_net_with_biases_and_batchnorm() -> None:
    """A ResNet with conv biases, a Linear bias and BatchNorm with nonzero running means and β
    (scaled with the product of the factors before them) gives float32 scores proportional to
    the float64 ones (1e-5); it scales at block outputs (the first after every 4 weighted
    layers), never at a layer inside a block."""
    model = _trained_look(TinyResNet())
    plan = scaling_plan(model)
    assert plan is not None
    assert plan.cuts == ("blocks.1.act2", "blocks.3.act2", "blocks.5.act2", "blocks.7.act2")
    s32, s64 = _both(model, (3, 8, 8))
    assert max(float(s.max()) for s in s64.values()) > FLOAT32_MAX
    assert all(s.dtype == torch.float32 for s in s32.values())
    assert _ratio_spread(s32, s64) < 1e-5


class BnThenConv(nn.Module):
    """A convolution fed by a BatchNorm output (no ReLU between): with a positive running mean
    its input, and so ∂R/∂W, can be negative."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3)
        self.act, self.fc = nn.ReLU(), nn.Linear(8 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.act(self.conv2(self.bn(self.conv1(x)))), 1))


def test_signs_of_gradients() -> None:
    """Where every weighted layer's input comes from the ones input or a ReLU, the plan knows
    ∂R/∂θ ≥ 0 and skips the |·| pass; a convolution fed by BatchNorm with a large running mean
    gets negative ∂R/∂θ, so the |·| pass stays, and its float32 scores are still nonnegative and
    proportional to the float64 ones."""
    assert scaling_plan(_trained_look(TinyResNet())).nonnegative  # type: ignore[union-attr]
    model = _trained_look(BnThenConv())
    with torch.no_grad():  # half the channels come out of BatchNorm negative
        model.bn.running_mean[:4] = 1e3
        model.bn.running_var[:4] = 1e6
        model.bn.bias[:4] = 0.0
    plan = scaling_plan(model)
    assert plan is not None and not plan.nonnegative
    positive = {n: p.detach().abs() for n, p in model.named_parameters()}
    conv2 = positive["conv2.weight"].requires_grad_(True)
    out = torch.func.functional_call(model.eval(), {**positive, **dict(model.named_buffers())}, (torch.ones(1, 3, 8, 8),))
    assert float(torch.autograd.grad(out.sum(), conv2)[0].min()) < 0  # the sign |·| removes is there
    s32, s64 = _both(model, (3, 8, 8))
    assert all(bool((s >= 0).all()) for s in s32.values())
    assert _ratio_spread(s32, s64) < 1e-5


def test_float32_leaves_model_buffers_and_hooks_alone() -> None:
    """The float32 pass scales private copies only: parameters, BatchNorm running means (which
    it scales) and the hook lists of every module are as before."""
    model = _trained_look(TinyResNet())
    before = {n: t.detach().clone() for n, t in model.state_dict().items()}
    SynFlow(precision="float32").score(model, _ctx(model, (3, 8, 8)))
    after = model.state_dict()
    assert all(torch.equal(after[n], t) for n, t in before.items())
    assert all(not m._forward_hooks for m in model.modules())


class Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class PlusOne(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 16, bias=False), nn.Linear(16, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))) + 1.0)


class Overflowing(nn.Module):
    """One residual block whose branch alone passes float32's range: no cut inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.branch = _deep_chain(depth=26, width=64, seed=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.branch(x) + x


@pytest.mark.parametrize("make", [Gelu, PlusOne, Overflowing], ids=["gelu", "plus-constant", "one-region-overflows"])
def test_falls_back_to_float64(make: type[nn.Module]) -> None:
    """Where rescaling is not provably exact (a GELU, a constant added) or a float32 pass is
    still not finite, float32 scoring returns exactly the float64 scores."""
    torch.manual_seed(0)
    model = make()
    shape = (64,) if make is Overflowing else (16,)
    s32, s64 = _both(model, shape)
    assert (scaling_plan(model) is None) == (make is not Overflowing)
    assert all(s32[n].dtype == torch.float64 and torch.equal(s32[n], s64[n]) for n in s64)


def test_default_precision_is_float32() -> None:
    """The registered synflow scorer scores in float32 unless asked for float64; other values
    are refused."""
    scorer = get_plugins().registry("scorer").get("synflow")()
    model = _deep_chain(depth=3)
    assert all(s.dtype == torch.float32 for s in scorer.score(model, _ctx(model, (64,))).values())
    with pytest.raises(ValueError):
        SynFlow(precision="float16")  # type: ignore[arg-type]


def _bundle(shape: tuple[int, int, int]) -> DataBundle:
    x = torch.zeros(10, *shape, dtype=torch.uint8)
    split = ArrayData(x=x, y=torch.arange(10))
    c = shape[0]
    return DataBundle(name="synthetic", train=split, test=split, num_classes=10, mean=(0.5,) * c, std=(0.25,) * c)


def _top(scores: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """Flat boolean vector of the k best unpruned positions (one global threshold)."""
    flat = torch.cat([torch.where(masks[n], scores[n].double(), -1.0).flatten() for n in scores])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, k).indices] = True
    return keep


def test_each_round_selects_the_same_weights() -> None:
    """Round by round from the same masks (the float64 path's), the float32 and float64 scores of
    cifar_resnet20 select the same global top-k on at least 99.9% of positions, in each of 10
    rounds towards 98% sparsity."""
    model = build_model("cifar_resnet20", _bundle((3, 32, 32)), 0)
    ctx = _ctx(model, (3, 32, 32))
    masks = {n: m.clone() for n, m in ctx.masks.items()}
    total = sum(m.numel() for m in masks.values())
    for r in range(1, 11):
        Masks(masks).apply(model)
        s32 = SynFlow(precision="float32").score(model, ctx)
        s64 = SynFlow(precision="float64").score(model, ctx)
        k = round(total * 0.02 ** (r / 10))
        keep32, keep64 = _top(s32, masks, k), _top(s64, masks, k)
        assert int((keep32 != keep64).sum()) <= 0.001 * total, f"round {r}"
        start = 0
        for n, m in masks.items():
            masks[n] = keep64[start : start + m.numel()].view_as(m)
            start += m.numel()


def test_masks_of_both_precisions_agree() -> None:
    """The synflow recipe (100 rounds, global threshold) at 98% sparsity gives digits_cnn masks
    that agree on at least 99.9% of positions with float32 and float64 scoring."""
    data = _bundle((1, 8, 8))
    recipe = resolve_method("synflow")
    model = build_model("digits_cnn", data, 0)
    masks = []
    for precision in ("float32", "float64"):
        method = attrs.evolve(recipe, scorer_options={"precision": precision})
        masks.append(prune(copy.deepcopy(model), data, method, 0.98, allow_collapse=True).masks)
    same = sum(int((masks[0][n] == masks[1][n]).sum()) for n in masks[0])
    assert masks[0].kept() == masks[1].kept()
    assert same / masks[0].total() >= 0.999
