"""SynFlow (Tanaka, Kunin, Yamins, Ganguli, NeurIPS 2020): data-free synaptic flow.

One call scores once: on the model itself (no copy), in eval mode (BatchNorm applies its
current running statistics, i.e. it is an affine map), with every parameter replaced by its
absolute value in float64, an all-ones input of shape (1, *input_shape), R = sum of the
outputs and score = |θ ⊙ ∂R/∂θ| for the prunable weights. The iteration (100 rounds at density
d^(k/100), masks applied between rounds) is the pipeline's: ``Method(rounds=100)``.

The parameters are swapped, not edited: :func:`torch.func.functional_call` runs the model with
float64 |θ| tensors in place of its parameters and puts the original tensor objects back
afterwards, so the weights come back bit for bit (signs, −0.0, dtype, storage), ``.grad`` is
untouched (:func:`torch.autograd.grad`), and every module's train/eval flag is restored.
Buffers (BatchNorm running statistics) are used as they are, cast to float64 — with the
default init (mean 0, variance 1) this is the original code's linearisation exactly; the
original also takes |running_mean|, which only differs after training.

``precision="float32"`` trades the overflow safety of float64 for speed (deep nets can overflow
float32: the pipeline then reports non-finite scores).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import torch
from torch import nn

from prunekit.hookspecs import hookimpl
from prunekit.interfaces import Scorer, ScoringContext


@attrs.frozen(kw_only=True)
class SynFlow(Scorer):
    """|θ ⊙ ∂R/∂θ| of the all-positive network on an all-ones input (Tanaka et al. 2020)."""

    name: ClassVar[str] = "synflow"
    description: ClassVar[str] = "data-free synaptic flow |θ·∂R/∂θ| of the |θ| network, float64"
    needs_data: ClassVar[bool] = False

    precision: Literal["float64", "float32"] = attrs.field(
        default="float64", validator=attrs.validators.in_(("float64", "float32"))
    )

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        tensors: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, p in model.named_parameters():
                tensors[name] = p.detach().to(dtype, copy=True).abs_()
            for name, b in model.named_buffers():
                tensors[name] = b.detach().to(dtype) if b.is_floating_point() else b
        probes = [tensors[layer.name].requires_grad_(True) for layer in ctx.layers]
        device = probes[0].device
        x = torch.ones((1, *ctx.input_shape), dtype=dtype, device=device)
        modes = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            with torch.enable_grad():
                out = torch.func.functional_call(model, tensors, (x,))
                grads = torch.autograd.grad(out.sum(), probes, allow_unused=True)
        finally:
            for m, mode in modes:
                m.training = mode
        with torch.no_grad():
            # gradients are fresh tensors owned by this call: score in place (copy odd views)
            scores = [
                torch.zeros_like(p) if g is None else g if g.is_contiguous() else g.contiguous()
                for g, p in zip(grads, probes)
            ]
            torch._foreach_mul_(scores, [p.detach() for p in probes])
            torch._foreach_abs_(scores)
        return {layer.name: s for layer, s in zip(ctx.layers, scores)}


@hookimpl
def register_scorers(register):  # type: ignore[no-untyped-def]
    register(SynFlow)
