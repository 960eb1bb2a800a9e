"""SNIP (Lee, Ajanthan, Torr, ICLR 2019): connection sensitivity s = |θ ⊙ ∂L/∂θ|.

Scored on the model itself at its current (masked) weights: cross-entropy on the class-balanced
scoring batches, gradients of the prunable weights summed over the batches (one forward and
one backward per batch, :func:`torch.autograd.grad` on the prunable weights only, so ``.grad``
is never touched). BatchNorm runs in train mode by default, as in the reference code (which
scores a fresh model, i.e. in train mode); the running statistics that this updates are saved
before and restored afterwards, as is every module's train/eval flag, so the model leaves the
scorer exactly as it came.

Scoring batch (``batch_rule``), as in the authors' code (Su et al. 2020, ``train_ticket.py``):

* ``single`` — 10 samples per class, 1 iteration;
* ``split`` — 1 sample per class, 10 iterations (gradients summed);
* ``auto`` (default) — ``split`` when the dataset has ≥ 200 classes (Tiny-ImageNet) or the model
  is deeper than 32, else ``single``. *Depth* is the number of prunable layers that are not
  1×1 convolutions — the usual count, which leaves out ResNet projection shortcuts:
  ``cifar_resnet32`` → 32 (single), ``cifar_resnet56`` → 56 (split), ``cifar_vgg19_bn`` → 17.

``samples_per_class`` / ``iterations`` override the rule when given.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import (
    DataBundle,
    DataRequest,
    PrunekitError,
    Scorer,
    ScoringContext,
    hookimpl,
    prunable_layers,
)
from prunekit.scoring import (
    Validator,
    bn_mode_validator,
    grad_enabled_on,
    optional_positive,
    preserved,
    prunable_weights,
    zero_filled,
)

BatchRule = Literal["auto", "single", "split"]
DEEP = 32  # "ResNets deeper than 32" use the split batch
MANY_CLASSES = 200  # Tiny-ImageNet uses the split batch


def model_depth(model: nn.Module) -> int:
    """Prunable layers that are not 1×1 convolutions (ResNet32 → 32, VGG19 → 17)."""
    return sum(
        1
        for layer in prunable_layers(model)
        if not (layer.kind == "conv" and all(k == 1 for k in layer.shape[2:]) and len(layer.shape) > 2)
    )


def batch_request(
    model: nn.Module,
    num_classes: int,
    rule: str,
    samples_per_class: int | None,
    iterations: int | None,
) -> DataRequest:
    """The scoring batch of SNIP and GraSP under ``rule`` (see the module docstring)."""
    if rule == "auto":
        split = num_classes >= MANY_CLASSES or model_depth(model) > DEEP
        rule = "split" if split else "single"
    per_class, iters = (1, 10) if rule == "split" else (10, 1)
    return DataRequest(
        samples_per_class=samples_per_class if samples_per_class is not None else per_class,
        iterations=iterations if iterations is not None else iters,
    )


def set_mode(model: nn.Module, bn_mode: str) -> None:
    model.train(bn_mode == "train")


def rule_validator() -> Validator:
    """An attrs validator for ``batch_rule``: "auto", "single" or "split"."""
    return attrs.validators.in_(("auto", "single", "split"))


@attrs.frozen(kw_only=True)
class Snip(Scorer):
    """|θ ⊙ ∂L/∂θ| on class-balanced batches, gradients summed (Lee et al. 2019)."""

    name: ClassVar[str] = "snip"
    description: ClassVar[str] = "connection sensitivity |θ·∂L/∂θ| on a class-balanced batch"

    batch_rule: BatchRule = attrs.field(default="auto", validator=rule_validator())
    samples_per_class: int | None = attrs.field(default=None, validator=optional_positive())
    iterations: int | None = attrs.field(default=None, validator=optional_positive())
    xavier_copy: bool = False  # score re-drawn Xavier-normal weights (one popular port)
    bn_mode: Literal["train", "eval"] = attrs.field(default="train", validator=bn_mode_validator())

    def data_request(self, model: nn.Module, data: DataBundle) -> DataRequest:
        return batch_request(model, data.num_classes, self.batch_rule, self.samples_per_class, self.iterations)

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        weights = prunable_weights(model, ctx)
        saved_weights: list[torch.Tensor] = []
        with preserved(model, buffers=self.bn_mode == "train"), grad_enabled_on(weights):
            try:
                if self.xavier_copy:
                    saved_weights = self._redraw(weights, ctx)
                set_mode(model, self.bn_mode)
                grads: list[torch.Tensor] | None = None
                dtype = weights[0].dtype
                for x, y in ctx.batches:
                    loss = F.cross_entropy(model(x.to(dtype)), y)
                    g = zero_filled(torch.autograd.grad(loss, weights, allow_unused=True), weights)
                    if grads is None:
                        grads = list(g)
                    else:
                        torch._foreach_add_(grads, g)
                if grads is None:
                    raise PrunekitError("snip needs at least one scoring batch")
                scores = [g if g.is_contiguous() else g.contiguous() for g in grads]
                with torch.no_grad():  # the summed gradients are ours: score in place
                    torch._foreach_mul_(scores, [w.detach() for w in weights])
                    torch._foreach_abs_(scores)
            finally:
                if saved_weights:
                    with torch.no_grad():
                        torch._foreach_copy_(weights, saved_weights)
        return {layer.name: s for layer, s in zip(ctx.layers, scores)}

    @torch.no_grad()
    def _redraw(self, weights: list[nn.Parameter], ctx: ScoringContext) -> list[torch.Tensor]:
        """Replace the weights by Xavier-normal draws (masked); return the originals."""
        saved = [w.detach().clone() for w in weights]
        for layer, w in zip(ctx.layers, weights):
            draw = torch.empty(w.shape, dtype=w.dtype)
            nn.init.xavier_normal_(draw, generator=ctx.generator("snip-xavier", layer.name))
            w.copy_(draw.to(w.device) * ctx.masks[layer.name].to(device=w.device, dtype=w.dtype))
        return saved


@hookimpl
def register_scorers(register):  # type: ignore[no-untyped-def]
    register(Snip)
