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
*linearised, non-negative* stand-in of its parameters, in float32 (again in float64 when
float32 overflows or a gradient comes near its underflow):

* every prunable weight is replaced by its mask divided by the number of kept inputs of its
  output unit (0/1 pattern, rows normalised so activations stay near 1 and neither overflow
  nor underflow in deep nets);
* biases are zero (a constant does not carry information from the input);
* every other parameter is a positive constant: 1 for vectors (norm scales, layer scales),
  1/fan-in for matrices and larger (layers left dense by the policy, embeddings, tokens) —
  so a zero-initialised BatchNorm (timm's ``zero_init_last``) does not cut its branch: only
  the masks decide;
* BatchNorm runs in eval mode with running mean 0 and running variance 1, i.e. as a positive
  per-channel scale; LayerNorm, GroupNorm, InstanceNorm and LocalResponseNorm pass their input
  through unchanged (their statistics are not paths from the input: subtracting the mean would
  erase the probe).

The input is one sample of positive values drawn from a fixed seed (between 0.5 and 1.5, so
that tokens differ and attention weights have non-zero gradients), every activation is then
≥ 0, ReLU-like units pass it unchanged, and ``R = sum(outputs)`` is a sum over input→output
paths of products of non-negative numbers. A kept weight is *effective* iff ∂R/∂w ≠ 0, i.e.
iff it lies on at least one path of kept weights from the input to the output: a weight off
every path has a gradient of exactly 0, one on a path a positive gradient. While the probe
runs, activations (ReLU, ReLU6, GELU, SiLU, hard-swish, tanh...) are the identity and gates
(sigmoid, hard-sigmoid: positive at 0, so a gate whose inputs are all pruned still passes its
signal) are 1 + x / (1 + |x|), so that a saturated one (slope 0) does not hide the weights before it; and
softmax, whose derivatives cancel (it ignores a constant shift of its input), becomes the
elementwise (1 + x / (1 + |x|)) / n — in scaled-dot-product attention too — so query and key
weights count as the paths they are, while the attention weights stay bounded. A probe whose
output or gradients are not finite is "not computed", never a wrong answer.
Residual additions and concatenations are handled by autograd like any other op.

Assumptions (documented limits): the model's other elementwise ops keep positive values
positive with a positive slope (custom autograd activations are not replaced); max-pooling
routes the gradient to one position per window — with channel-shared weights a connected
channel is selected somewhere, so this only matters in contrived cases. When the stand-in
cannot run the model (an op that fails on the stand-in, an output
that is not a tensor), :func:`effective_sparsity` returns ``None`` and
:func:`effective_sparsity_or_reason` says why — a diagnostic never blocks a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from prunekit.errors import PrunekitError
from prunekit.layers import PrunableLayer
from prunekit.masks import Masks
from prunekit.scoring import preserved

NOT_COMPUTED = "not computed for this model"

_PASS_THROUGH_NORMS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
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


@torch.no_grad()
def _stand_in(
    model: nn.Module, masks: Masks, dtype: torch.dtype = torch.float64
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Replacement parameters and buffers in ``dtype`` (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if name in masks:
            m = masks[name].to(device=p.device, dtype=dtype)
            if m.ndim >= 2:
                fan = m.flatten(1).sum(1).clamp_min(1.0).view(-1, *([1] * (m.ndim - 1)))
                m = m / fan
            tensors[name] = m
        elif name.rsplit(".", 1)[-1] == "bias":
            tensors[name] = torch.zeros_like(p, dtype=dtype)
        elif p.ndim >= 2:
            tensors[name] = torch.full_like(p, 1.0 / max(1, p[0].numel()), dtype=dtype)
        else:
            tensors[name] = torch.ones_like(p, dtype=dtype)
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for buf_name, buf in module.named_buffers(recurse=False):
            full = prefix + buf_name
            if not buf.is_floating_point():
                tensors[full] = buf
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and buf_name == "running_mean":
                tensors[full] = torch.zeros_like(buf, dtype=dtype)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) and buf_name == "running_var":
                tensors[full] = torch.ones_like(buf, dtype=dtype)
            else:
                tensors[full] = buf.detach().to(dtype)
    return tensors, list(masks)


# activations through the origin: the identity for the probe
_ACTIVATIONS = frozenset(
    {
        F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
        F.relu6, F.hardtanh, F.hardtanh_, F.hardswish, F.silu, F.mish, F.gelu,
        F.elu, F.elu_, F.selu, F.celu, F.leaky_relu, F.leaky_relu_,
        F.tanh, torch.tanh, torch.tanh_, torch.Tensor.tanh, torch.Tensor.tanh_,
    }
)
# gates, positive at 0 (a gate whose inputs are all pruned still passes its signal):
# 1 + x / (1 + |x|), bounded so that gated products (SE blocks) do not grow without bound
_GATES = frozenset(
    {
        F.sigmoid, torch.sigmoid, torch.sigmoid_, torch.Tensor.sigmoid, torch.Tensor.sigmoid_,
        F.hardsigmoid, F.softplus,
    }
)


class _PositiveProbe(TorchFunctionMode):
    """While the probe runs: activations through the origin are the identity, gates (sigmoid,
    hard-sigmoid, softplus) are :func:`_bounded`, softmax and the attention weights of
    scaled-dot-product attention are :func:`_soft` of the logits, elementwise.

    On the positive probe an activation only matters through its slope, and saturating ones
    (hard-sigmoid above 3, ReLU6 above 6, a sigmoid whose value rounds to exactly 1) have
    slope 0, which would cut the weights before them (an SE gate's convs) although they are
    connected. Softmax's derivatives are partly negative and cancel for tokens that look alike
    (a constant shift of the logits changes nothing), which would hide the query and key
    weights. The stand-ins keep every path positive. Attention with a mask or a causal flag
    is left as it is.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _ACTIVATIONS and args and torch.is_tensor(args[0]):
            return args[0]
        if func in _GATES and args and torch.is_tensor(args[0]):
            return _bounded(args[0])
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            if kwargs.get("attn_mask") is None and not kwargs.get("is_causal") and len(args) == 3:
                scale = kwargs.get("scale") or q.shape[-1] ** -0.5
                return _soft(q @ k.transpose(-2, -1) * scale, -1) @ v
        elif func in (torch.softmax, F.softmax, torch.Tensor.softmax):
            x = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if torch.is_tensor(x) and dim is not None and x.is_floating_point():
                return _soft(x, dim)
        return func(*args, **kwargs)


def _bounded(x: torch.Tensor) -> torch.Tensor:
    """1 + x / (1 + |x|): positive, in (0, 2), 1 at 0, strictly increasing (slope > 0)."""
    return 1.0 + x / (1.0 + x.abs())


def _soft(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax's stand-in: :func:`_bounded` / n, elementwise — positive, bounded (so deep
    attention stacks neither overflow nor vanish) and strictly increasing."""
    return _bounded(x) / x.shape[dim]


def _pass_through(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """Forward hook: a normalisation layer's output replaced by its input (same shape)."""
    x = args[0] if args else None
    if torch.is_tensor(x) and torch.is_tensor(output) and x.shape == output.shape:
        return x
    return output


TINY = 1e-30  # a float32 gradient this small could sit beside one that underflowed to 0


def effective_masks(model: nn.Module, masks: Masks, input_shape: Sequence[int]) -> Masks:
    """The kept weights that still lie on a path from the input to the output.

    ``input_shape`` is one sample's shape, e.g. (3, 32, 32). The model is not changed (its
    weights, buffers and train/eval mode are as before). See the module docstring for the
    method and its assumptions. The probe runs in float32 and again in float64 when float32
    overflows or a gradient comes near its underflow (so a zero is never a rounding artefact).
    Raises :class:`PrunekitError` when the model cannot be probed; :func:`effective_sparsity`
    turns that into ``None``.
    """
    masks.check_fits(model)
    names = list(masks)
    grads = _probe(model, masks, input_shape, torch.float32)
    if grads is None:
        grads = _probe(model, masks, input_shape, torch.float64)
    if grads is None:
        raise PrunekitError("the probe overflowed float64 (activations grow without bound)")
    result = {}
    for name, g in zip(names, grads):
        kept = masks[name].to(g.device if g is not None else "cpu")
        result[name] = kept & (g != 0) if g is not None else torch.zeros_like(kept)
    return Masks(result)


def _probe(
    model: nn.Module, masks: Masks, input_shape: Sequence[int], dtype: torch.dtype
) -> list[torch.Tensor | None] | None:
    """∂R/∂(stand-in of every masked weight) in ``dtype``, or None when ``dtype`` is not enough
    (non-finite values, or a gradient within reach of underflow)."""
    tensors, names = _stand_in(model, masks, dtype)
    probes = [tensors[n].requires_grad_(True) for n in names]
    device = probes[0].device if probes else torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand((1, *input_shape), generator=g, dtype=torch.float64) + 0.5).to(device, dtype)
    hooks = [
        m.register_forward_hook(_pass_through) for m in model.modules() if isinstance(m, _PASS_THROUGH_NORMS)
    ]
    with preserved(model):
        try:
            model.eval()
            with torch.enable_grad(), _PositiveProbe():
                out = torch.func.functional_call(model, tensors, (x,), strict=False)
                outputs = [out] if torch.is_tensor(out) else list(out) if isinstance(out, (tuple, list)) else []
                if not outputs or not all(torch.is_tensor(o) for o in outputs):
                    raise PrunekitError(f"the model's output is a {type(out).__name__}, not tensors")
                total = torch.stack([o.sum() for o in outputs]).sum()
                if not torch.isfinite(total) or (dtype != torch.float64 and float(total.detach().abs()) < TINY):
                    return None
                grads: list[torch.Tensor | None] = list(torch.autograd.grad(total, probes, allow_unused=True))
        finally:
            for hook in hooks:
                hook.remove()
    for grad in grads:
        if grad is None:
            continue
        if not bool(torch.isfinite(grad).all()):
            return None
        nonzero = grad[grad != 0]
        if dtype != torch.float64 and nonzero.numel() and float(nonzero.abs().min()) < TINY:
            return None
    return grads


def effective_sparsity_or_reason(
    model: nn.Module, masks: Masks, input_shape: Sequence[int]
) -> tuple[float | None, str | None]:
    """(effective sparsity, None), or (None, why it was not computed for this model).

    Never raises: a diagnostic must not block a result.
    """
    try:
        return effective_masks(model, masks, input_shape).sparsity(), None
    except Exception as err:  # noqa: BLE001 — any failure of the probe is reported, never raised
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, f"{NOT_COMPUTED}: {text[:300]}"


def effective_sparsity(model: nn.Module, masks: Masks, input_shape: Sequence[int]) -> float | None:
    """Fraction of prunable weights that are pruned or cut off from the input or the output;
    ``None`` when it cannot be computed for this model (see :func:`effective_sparsity_or_reason`)."""
    return effective_sparsity_or_reason(model, masks, input_shape)[0]


def summary(model: nn.Module, masks: Masks, input_shape: Sequence[int]) -> dict[str, Any]:
    """The diagnostics to record beside a result: effective sparsity (``None`` with a note
    when not computed) and the collapsed layers. Never raises."""
    value, reason = effective_sparsity_or_reason(model, masks, input_shape)
    return {
        "effective_sparsity": value,
        "effective_sparsity_note": reason,
        "collapsed_layers": collapsed_layers(masks),
    }
