"""GraSP (Wang, Zhang, Grosse, ICLR 2020): keep the weights whose S = −θ ⊙ Hg is lowest.

As in the reference code (``pruner/GraSP.py`` of Su et al., adopted from the GraSP authors):

1. a *scoring copy* of the model (the only deep copy any built-in scorer makes) whose Linear
   weights are re-drawn Xavier-normal (``reinit_linear``, default on; drawn from the run seed
   and multiplied by the current masks), in train mode (``bn_mode``), logits divided by
   ``temperature`` T = 200;
2. every class-balanced scoring batch is split into two halves (first ⌊n/2⌋ samples, rest);
   g = Σ_halves ∂L_h/∂θ with L_h the mean cross-entropy of half h (no graph kept);
3. z = Σ_halves g · ∂L_h/∂θ (with graph), back-propagated: Hg = ∂z/∂θ;
4. "higher = keep" score is +θ ⊙ Hg on the copy's weights, so a global top-k keeps the lowest
   −θ ⊙ Hg, as GraSP removes the largest. θ are only the prunable weights.

The reference runs the forward of every half twice (once per pass). Here each half is
forwarded once: its gradient is taken with ``create_graph=True``, g is the sum of the detached
gradients, and z is back-propagated through the kept graphs — the same numbers (BatchNorm
sees the same half batch both times) at about one forward and one backward less per half.
The copy's train-mode BatchNorm layers get a hand-written second derivative (see
``_FastBatchNorm`` below), cheaper than PyTorch's generic one; the numbers are the same.

Scoring batch: the same rule as SNIP (:func:`prunekit_plugins.snip.batch_request`) — 10
samples per class in one batch by default, 1 sample per class × 10 batches for ResNets deeper
than 32 and for ≥ 200 classes. This matches both Su et al.'s code and the GraSP authors'
configs (10 per class for CIFAR-10 and CIFAR-100, 1 per class × 10 iterations for
Tiny-ImageNet).
"""

from __future__ import annotations

import copy
from typing import ClassVar, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import DataBundle, DataRequest, PrunekitError, Scorer, ScoringContext, hookimpl
from prunekit.scoring import bn_mode_validator, optional_positive, prunable_weights, zero_filled
from prunekit_plugins.snip import BatchRule, batch_request, rule_validator, set_mode


@attrs.frozen(kw_only=True)
class Grasp(Scorer):
    """+θ ⊙ Hg on a scoring copy (keeps the lowest −θ ⊙ Hg); Wang et al. 2020."""

    name: ClassVar[str] = "grasp"
    description: ClassVar[str] = "gradient-flow preservation: keep the lowest −θ·Hg (Hessian-gradient product)"

    temperature: float = attrs.field(default=200.0, validator=attrs.validators.gt(0))
    reinit_linear: bool = True
    batch_rule: BatchRule = attrs.field(default="auto", validator=rule_validator())
    samples_per_class: int | None = attrs.field(default=None, validator=optional_positive())
    iterations: int | None = attrs.field(default=None, validator=optional_positive())
    bn_mode: Literal["train", "eval"] = attrs.field(default="train", validator=bn_mode_validator())

    def data_request(self, model: nn.Module, data: DataBundle) -> DataRequest:
        return batch_request(model, data.num_classes, self.batch_rule, self.samples_per_class, self.iterations)

    def scoring_copy(self, model: nn.Module, ctx: ScoringContext) -> nn.Module:
        """The copy GraSP scores: Linear weights re-drawn Xavier-normal (masked), mode set."""
        net = copy.deepcopy(model)
        for p in net.parameters():
            p.grad = None
        if self.reinit_linear:
            params = dict(net.named_parameters())
            with torch.no_grad():
                for layer in ctx.layers:
                    if layer.kind != "linear":
                        continue
                    w = params[layer.name]
                    draw = torch.empty(w.shape, dtype=w.dtype)
                    nn.init.xavier_normal_(draw, generator=ctx.generator("grasp-xavier", layer.name))
                    w.copy_(draw.to(w.device) * ctx.masks[layer.name].to(device=w.device, dtype=w.dtype))
        set_mode(net, self.bn_mode)
        for p in net.parameters():
            p.requires_grad_(False)
        return net

    def hessian_gradient(
        self, net: nn.Module, ctx: ScoringContext
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(θ, Hg) of the copy's prunable weights."""
        weights = prunable_weights(net, ctx)
        for w in weights:
            w.requires_grad_(True)
        dtype = weights[0].dtype
        halves: list[tuple[torch.Tensor, torch.Tensor]] = []
        for x, y in ctx.batches:
            n = x.shape[0] // 2
            halves += [(x[:n], y[:n]), (x[n:], y[n:])]
        halves = [(x, y) for x, y in halves if x.shape[0] > 0]
        if not halves:
            raise PrunekitError("grasp needs at least one non-empty scoring batch")
        with torch.enable_grad():
            grads_f = []
            for x, y in halves:
                loss = F.cross_entropy(net(x.to(dtype)) / self.temperature, y)
                grads_f.append(zero_filled(torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True), weights))
            g = [gf.detach().clone() for gf in grads_f[0]]
            for gf in grads_f[1:]:
                torch._foreach_add_(g, [t.detach() for t in gf])
            z = sum(_dot(gf, g) for gf in grads_f)
            hg = zero_filled(torch.autograd.grad(z, weights, allow_unused=True), weights)
        return [w.detach() for w in weights], [h.detach() for h in hg]

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        net = use_fast_batch_norm(self.scoring_copy(model, ctx))
        theta, hg = self.hessian_gradient(net, ctx)
        scores = torch._foreach_mul(theta, hg)
        return {layer.name: s for layer, s in zip(ctx.layers, scores)}


# ------------------------------------------------ BatchNorm with a cheap double backward
# PyTorch's double backward of train-mode BatchNorm is a long composite (≈ 35 full-size ops per
# layer), about half of GraSP's time on a CIFAR ResNet. The scoring copy's BatchNorm layers
# (frozen affine parameters, batch statistics) are replaced by a Function with the same forward
# and first backward (the fused kernels) and a hand-derived second backward (≈ 12 ops):
#
#   dx = γ r (dy − mean(dy) − x̂ · mean(dy·x̂)),  r = (σ² + ε)^(−1/2),  x̂ = (x − μ) r
#
# for an upstream v of dx, with per-channel sums over M elements S_v = Σv, S_dy = Σdy,
# A = Σ v x̂, C = Σ dy x̂, D = Σ v dy and K = D − S_v S_dy / M:
#
#   ∂z/∂dy = γ r (v − S_v/M − x̂ A/M)
#   ∂z/∂x  = −(γ r²/M) [x̂ (K − 3AC/M) + C (v − S_v/M) + A (dy − S_dy/M)]
#
# (checked against finite differences by tests/test_scorers.py).


def _channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, *([1] * (like.ndim - 2)))


class _BatchNormBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dy, weight, mean, invstd):  # type: ignore[no-untyped-def, override]
        dx = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, None, None, mean, invstd, True, 0.0, [True, False, False]
        )[0]
        ctx.save_for_backward(x, dy, weight, mean, invstd)
        return dx

    @staticmethod
    def backward(ctx, v):  # type: ignore[no-untyped-def, override]
        x, dy, weight, mean, invstd = ctx.saved_tensors
        dims = [0, *range(2, x.ndim)]
        m = x.numel() // x.shape[1]
        xhat = (x - _channel(mean, x)) * _channel(invstd, x)
        s_v, s_dy = v.sum(dims), dy.sum(dims)
        a, c, d = (v * xhat).sum(dims), (dy * xhat).sum(dims), (v * dy).sum(dims)
        gamma = weight if weight is not None else torch.ones_like(invstd)
        coef = -gamma * invstd * invstd / m
        k = d - s_v * s_dy / m
        gx = _channel(coef * (k - 3 * a * c / m), x) * xhat
        gx = gx + _channel(coef * c, x) * v + _channel(coef * a, x) * dy
        gx = gx - _channel(coef * (c * s_v + a * s_dy) / m, x)
        scale = gamma * invstd
        gdy = _channel(scale, x) * v - _channel(scale * s_v / m, x) - _channel(scale * a / m, x) * xhat
        return gx, gdy, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):  # type: ignore[no-untyped-def, override]
        y, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        return y

    @staticmethod
    def backward(ctx, dy):  # type: ignore[no-untyped-def, override]
        x, weight, mean, invstd = ctx.saved_tensors
        return _BatchNormBackward.apply(x, dy, weight, mean, invstd), None, None, None


class _FastBatchNorm(nn.Module):
    """Train-mode BatchNorm (batch statistics, frozen affine) with the cheap double backward."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.weight = bn.weight
        self.bias = bn.bias
        self.eps = bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BatchNormTrain.apply(x, self.weight, self.bias, self.eps)


def use_fast_batch_norm(net: nn.Module) -> nn.Module:
    """Swap the copy's plain BatchNorm layers that use batch statistics for :class:`_FastBatchNorm`.

    Only exact ``BatchNorm1d/2d/3d`` (subclasses may fuse more, e.g. timm's BatchNormAct2d)
    whose affine parameters do not require grad.
    """
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) not in kinds:
                continue
            assert isinstance(child, nn.modules.batchnorm._BatchNorm)
            batch_stats = child.training or child.running_mean is None
            frozen = all(not p.requires_grad for p in child.parameters())
            if batch_stats and frozen:
                setattr(parent, child_name, _FastBatchNorm(child))
    return net


def _dot(a: tuple[torch.Tensor, ...] | list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Σ_l ⟨a_l, b_l⟩ (differentiable in ``a``)."""
    return sum((x * y).sum() for x, y in zip(a, b))  # type: ignore[return-value]


@hookimpl
def register_scorers(register):  # type: ignore[no-untyped-def]
    register(Grasp)
