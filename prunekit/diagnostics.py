"""Diagnostics of a pruned network: per-layer table, collapsed layers, effective sparsity.

* :func:`layer_table` — kept / total / density of every prunable layer;
* :func:`collapsed_layers` — layers that lost every weight (they disconnect the network,
  Tanaka et al. 2020);
* :func:`effective_masks` / :func:`effective_sparsity` — kept weights that can no longer
  carry information from the input to the output count as pruned too (Vysogorets & Kempe's
  "effective sparsity"; Frankle et al. 2021 and the SynFlow paper discuss the same effect).

How the effective masks are computed
------------------------------------
The model is evaluated, without being changed, through :func:`torch.func.functional_call` on a
*linearised, non-negative* stand-in of its parameters, in float64:

* every prunable weight is replaced by its mask divided by the number of kept inputs of its
  output unit (0/1 pattern, rows normalised so activations stay near 1 and neither overflow
  nor underflow in deep nets);
* biases are zero (a constant does not carry information from the input);
* every other parameter (e.g. a BatchNorm weight) becomes its absolute value;
* BatchNorm runs in eval mode with running mean 0 and running variance 1, i.e. as a positive
  per-channel scale.

With an all-ones input every activation is then ≥ 0, so ReLU-like units pass it unchanged,
and ``R = sum(outputs)`` is a sum over input→output paths of products of non-negative
numbers: no cancellation can occur. A kept weight is *effective* iff ∂R/∂w ≠ 0, i.e. iff it
lies on at least one path of kept weights from the input to the output. Residual additions
and concatenations are handled by autograd like any other op.

Assumptions (documented limits): activations map non-negative inputs to non-negative
outputs and are strictly increasing at positive inputs (ReLU, LeakyReLU, GELU-like units
are fine; a sigmoid's offset is not an input path but is harmless); normalisation layers
are BatchNorm (LayerNorm / GroupNorm / InstanceNorm subtract the per-sample mean, which is
the whole signal of a constant input, so they are refused); max-pooling routes the gradient
to one position per window — with channel-shared weights a connected channel is selected
somewhere, so this only matters in contrived cases. A BatchNorm channel whose weight is 0 is
treated as connected (its scale is taken in absolute value, not its pruning state).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.layers import PrunableLayer
from prunekit.masks import Masks

_UNSUPPORTED_NORMS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LocalResponseNorm,
)


def layer_table(layers: Sequence[PrunableLayer], masks: Masks) -> list[dict[str, Any]]:
    """One row per prunable layer: name, kind, shape, kept, total, density."""
    rows = []
    for layer in layers:
        m = masks[layer.name]
        kept = int(m.sum())
        total = m.numel()
        rows.append(
            {
                "name": layer.name,
                "kind": layer.kind,
                "shape": tuple(layer.shape),
                "kept": kept,
                "total": total,
                "density": kept / total if total else 1.0,
            }
        )
    return rows


def collapsed_layers(masks: Masks) -> list[str]:
    """Names of the layers that kept no weight at all, in mask order."""
    return [name for name, kept in masks.layer_kept().items() if kept == 0]


def _check_supported(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if isinstance(module, _UNSUPPORTED_NORMS):
            raise PrunekitError(
                f"effective sparsity needs BatchNorm or no normalisation, but {name or 'the model'} "
                f"is a {type(module).__name__}, which erases the constant probe input; "
                "use plain sparsity for this model"
            )


@torch.no_grad()
def _stand_in(model: nn.Module, masks: Masks) -> tuple[dict[str, torch.Tensor], list[str]]:
    """float64 replacement parameters and buffers (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if name in masks:
            m = masks[name].to(device=p.device, dtype=torch.float64)
            if m.ndim >= 2:
                fan = m.flatten(1).sum(1).clamp_min(1.0).view(-1, *([1] * (m.ndim - 1)))
                m = m / fan
            tensors[name] = m
        elif name.rsplit(".", 1)[-1] == "bias":
            tensors[name] = torch.zeros_like(p, dtype=torch.float64)
        else:
            tensors[name] = p.detach().to(torch.float64).abs()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for buf_name, buf in module.named_buffers(recurse=False):
            full = prefix + buf_name
            if not buf.is_floating_point():
                tensors[full] = buf
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and buf_name == "running_mean":
                tensors[full] = torch.zeros_like(buf, dtype=torch.float64)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and buf_name == "running_var":
                tensors[full] = torch.ones_like(buf, dtype=torch.float64)
            else:
                tensors[full] = buf.detach().to(torch.float64)
    return tensors, list(masks)


def effective_masks(model: nn.Module, masks: Masks, input_shape: Sequence[int]) -> Masks:
    """The kept weights that still lie on a path from the input to the output.

    ``input_shape`` is one sample's shape, e.g. (3, 32, 32). The model is not changed (its
    weights, buffers and train/eval mode are as before). See the module docstring for the
    method and its assumptions.
    """
    masks.check_fits(model)
    _check_supported(model)
    modes = {m: m.training for m in model.modules()}
    tensors, names = _stand_in(model, masks)
    probes = [tensors[n].requires_grad_(True) for n in names]
    device = probes[0].device if probes else torch.device("cpu")
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    try:
        model.eval()
        with torch.enable_grad():
            out = torch.func.functional_call(model, tensors, (x,), strict=False)
            total = out.sum() if torch.is_tensor(out) else sum(o.sum() for o in out)
            grads = torch.autograd.grad(total, probes, allow_unused=True)
    finally:
        for module, mode in modes.items():
            module.training = mode
    result = {}
    for name, g in zip(names, grads):
        kept = masks[name].to(device)
        result[name] = kept & (g != 0) if g is not None else torch.zeros_like(kept)
    return Masks(result)


def effective_sparsity(model: nn.Module, masks: Masks, input_shape: Sequence[int]) -> float:
    """Fraction of prunable weights that are pruned or cut off from the input or the output."""
    return effective_masks(model, masks, input_shape).sparsity()
