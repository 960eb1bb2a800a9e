"""SynFlow (Tanaka, Kunin, Yamins, Ganguli, NeurIPS 2020): data-free synaptic flow.

One call scores once: on the model itself (no copy), in eval mode (BatchNorm applies its
current running statistics, i.e. it is an affine map), with every parameter replaced by its
absolute value, an all-ones input of shape (1, *input_shape), R = sum of the outputs and
score = |θ ⊙ ∂R/∂θ| for the prunable weights. The iteration (100 rounds at density
d^(k/100), masks applied between rounds) is the pipeline's: ``Method(rounds=100)``.

The parameters are swapped, not edited: :func:`torch.func.functional_call` runs the model with
|θ| tensors in place of its parameters and puts the original tensor objects back afterwards,
so the weights come back bit for bit (signs, −0.0, dtype, storage), ``.grad`` is untouched
(:func:`torch.autograd.grad`), and every module's train/eval flag is restored. Buffers
(BatchNorm running statistics) are used as they are — with the default init (mean 0, variance
1) this is the original code's linearisation exactly; the original also takes
|running_mean|, which only differs after training.

Precision (``precision``)
-------------------------
R is a product of layer gains: on cifar_resnet32 it passes float32's range (≈ 3.4e38), on
cifar_resnet56 it is ≈ 1e69. Two ways to score without overflow:

* ``"float64"`` — the |θ| network in float64 (the original code's way); scores are |θ ⊙ ∂R/∂θ|.
* ``"float32"`` (default) — the |θ| network in float32, kept in range by scaling activations at
  *cuts*. A cut is a node of the model's graph (``torch.fx``) that every path from the input
  to the output passes through: a VGG layer's output, a ResNet block's output (after the
  addition), never a node inside a residual block. At the first cut after every
  ``SCALE_EVERY`` (4) weighted layers, the activation ``a`` is multiplied by ``k = 2^−e``
  where ``2^e`` is just above ``max |a|`` — a power of two, so the multiplication is exact.
  Scoring R' of the scaled network gives the scores times K = ∏k, the *same* positive
  constant for every weight (proof below), so the ranking — all the pipeline uses — is the
  float64 one up to float32 rounding; the returned scores are K·|θ ⊙ ∂R/∂θ|, not the
  unscaled values (which may not fit in float32).

Why every score gets the same factor: scoring is s_i = ∂R/∂ε at ε = 0 when θ_i becomes θ_i·e^ε.
Every operation in the |θ| network (convolution, linear map, eval-mode BatchNorm, ReLU,
pooling, addition, flattening) is positively homogeneous of degree 1 in its inputs *and* its
additive terms, so multiplying the value at a cut by k multiplies R by k — for any weights,
hence also for the perturbed ones — provided every additive term after the cut is multiplied
by k too (a residual addition needs no care: both of its inputs come after the same cuts).
Additive terms are therefore scaled with the product of the factors of the cuts before them:
the ``bias`` of a Conv/Linear layer, and BatchNorm's ``bias`` (β) and ``running_mean`` (μ),
since eval-mode BN(x) = |γ|(x − μ)/√(σ² + ε) + |β| gives K·BN(x) from K·x when μ and β are
scaled by K and γ and σ² are left alone (ε then needs no care). Biases are thus scored as in
float64 — not dropped, as some implementations do. Because the factors are read from the
activations, they are held constant for the gradient: R' = K·R for all weights near θ.

The float32 way applies only where this proof holds: the model traces with ``torch.fx``;
every node that feeds the output is one of the operations listed in ``_MODULES``,
``_FUNCTIONS`` and ``_METHODS`` (exact module types: a subclass may add an activation);
each module is called once; BatchNorm has running statistics; no constants or parameters are
added outside those layers. For any other model, or when R of a float32 pass is not finite
(an overflow between two scaled cuts), the call scores in float64 instead (the same ranking).
On CUDA the float32 pass runs with IEEE float32 convolutions and matmuls (no TF32), the
arithmetic of the CPU's pass.

Cost (float32): the pass itself, one copy of |θ| — into a buffer kept for the model object
while it lives, so 100 rounds reuse the same memory — and one multiply of the gradients by
|θ|. The |·| of the scores is skipped where the graph proves ∂R/∂θ ≥ 0 (every weighted layer
fed by the ones input or a ReLU, no subtraction or negative factor); a layer fed by BatchNorm
keeps it, as its running mean can make inputs negative.
"""

from __future__ import annotations

import operator
import warnings
import weakref
from typing import Any, ClassVar, Literal

import attrs
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from prunekit import Scorer, ScoringContext, hookimpl
from prunekit.scoring import ieee_float32, preserved

Precision = Literal["float32", "float64"]


@attrs.frozen(kw_only=True)
class SynFlow(Scorer):
    """|θ ⊙ ∂R/∂θ| of the all-positive network on an all-ones input (Tanaka et al. 2020)."""

    name: ClassVar[str] = "synflow"
    description: ClassVar[str] = (
        "data-free synaptic flow |θ·∂R/∂θ| of the |θ| network (float32 kept in range by exact rescaling)"
    )
    needs_data: ClassVar[bool] = False

    precision: Precision = attrs.field(default="float32", validator=attrs.validators.in_(("float32", "float64")))

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        scores = None
        named = list(model.named_modules())
        if self.precision == "float32":
            plan = scaling_plan(model, named)
            if plan is not None:
                scores = _synflow(model, ctx, torch.float32, plan, named)
        if scores is None:
            scores = _synflow(model, ctx, torch.float64, None, named)
        assert scores is not None  # float64 is never given up
        return {layer.name: s for layer, s in zip(ctx.layers, scores)}


# ------------------------------------------------------------------------------ the pass
@attrs.frozen
class Plan:
    """Where the float32 pass scales: module names of the cuts, in order, and for each the
    additive terms (parameter/buffer names) that follow it, up to the next cut."""

    cuts: tuple[str, ...]
    additive: tuple[tuple[str, ...], ...]  # additive[j]: terms between cut j and cut j + 1
    nonnegative: bool = False  # every ∂R/∂θ of a prunable weight is ≥ 0: no |·| pass needed


def _synflow(
    model: nn.Module,
    ctx: ScoringContext,
    dtype: torch.dtype,
    plan: Plan | None,
    named: list[tuple[str, nn.Module]] | None = None,
) -> list[torch.Tensor] | None:
    """Scores of ``ctx.layers`` in ``dtype``; with a ``plan``, scaled at its cuts (see module
    doc) and None when R is not finite (an overflow inside one region). ``named``: the
    model's ``named_modules()``, when the caller has them."""
    named = list(model.named_modules()) if named is None else named
    names, params = zip(*((n, p.detach()) for n, p in model.named_parameters()))
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        tensors.update(zip(names, _absolute(model, list(params), dtype, reuse=plan is not None)))
        scaled = set() if plan is None else {n for terms in plan.additive for n in terms}
        for name, b in model.named_buffers():
            if b.is_floating_point() and (b.dtype != dtype or name in scaled):
                tensors[name] = b.detach().to(dtype, copy=True)  # scaled ones: a copy of their own
            # the others are used as they are, without a swap
    probes = [tensors[layer.name].requires_grad_(True) for layer in ctx.layers]
    x = torch.ones((1, *ctx.input_shape), dtype=dtype, device=probes[0].device)
    handles = []
    with preserved(model):
        try:
            model.eval()
            if plan is not None:
                modules = dict(named)
                factor: list[torch.Tensor] = []  # K so far
                for j, cut in enumerate(plan.cuts):
                    terms = [tensors[n] for n in plan.additive[j]]
                    handles.append(modules[cut].register_forward_hook(_scale_hook(terms, factor)))
            with torch.enable_grad(), ieee_float32():
                total = torch.func.functional_call(model, tensors, (x,)).sum()
                if plan is not None and not bool(torch.isfinite(total)):
                    return None
                grads = torch.autograd.grad(total, probes, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
    with torch.no_grad():
        # gradients are fresh tensors owned by this call: score in place (copy odd views)
        scores = [
            torch.zeros_like(p) if g is None else g if g.is_contiguous() else g.contiguous()
            for g, p in zip(grads, probes)
        ]
        torch._foreach_mul_(scores, [p.detach() for p in probes])
        if plan is None or not plan.nonnegative:
            torch._foreach_abs_(scores)
    return scores


_WORKSPACES: weakref.WeakKeyDictionary[nn.Module, list[torch.Tensor]] = weakref.WeakKeyDictionary()


def _absolute(model: nn.Module, params: list[torch.Tensor], dtype: torch.dtype, *, reuse: bool) -> list[torch.Tensor]:
    """|θ| in ``dtype``. With ``reuse``, written into tensors kept for ``model`` while it lives
    (the 100 rounds of one pruning fill the same memory instead of fresh allocations, which
    cost more than the copy itself on a CPU); a scoring must not run on the same model object
    in two threads at once."""
    if not reuse:
        return torch._foreach_abs([p.to(dtype) for p in params])
    space = _WORKSPACES.get(model)
    if space is None or len(space) != len(params) or any(
        w.shape != p.shape or w.device != p.device for w, p in zip(space, params)
    ):
        space = [torch.empty(p.shape, dtype=dtype, device=p.device) for p in params]
        _WORKSPACES[model] = space
    for w, p in zip(space, params):
        if p.dtype == dtype:
            torch.abs(p, out=w)
        else:
            w.copy_(p).abs_()
    return space


def _scale_hook(terms: list[torch.Tensor], factor: list[torch.Tensor]):  # type: ignore[no-untyped-def]
    """Forward hook of a cut: multiply its output by 2^−e (2^e just above max |a|), then the
    additive terms up to the next cut by the product of all factors so far."""

    def hook(module: nn.Module, inputs: Any, out: torch.Tensor) -> torch.Tensor:
        low, high = torch.aminmax(out.detach())  # max |a| (linalg.vector_norm(inf) is slower)
        peak = torch.maximum(high, low.neg())
        _, exponent = torch.frexp(peak)  # peak = m·2^e with m in [0.5, 1); 0 and inf give e = 0
        k = torch.ldexp(torch.ones_like(peak), -exponent.clamp(-120, 120))
        total = k if not factor else factor[0] * k
        factor[:] = [total]
        if terms:
            torch._foreach_mul_(terms, total)
        return out * k

    return hook


# ------------------------------------------------------------------------------ the plan
# A cut is scaled once this many weighted layers passed since the last scaled one: few enough
# for any realistic gain (a layer multiplies by far less than 2^30 at init or after training;
# float32 holds 2^127), and few scalings keep the kernel count low on GPUs.
SCALE_EVERY = 4

# Operations positively homogeneous of degree 1 in their inputs (exact types, eval mode).
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WEIGHTED = (*_CONV, nn.Linear)
_MODULES = (
    *_WEIGHTED,
    *_BN,
    nn.ReLU,
    nn.LeakyReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
)
_SUMS = {operator.add, operator.sub, torch.add, torch.sub}  # every operand from the input
_SCALINGS = {operator.mul, operator.truediv, torch.mul}  # a node times / divided by a number
_FUNCTIONS = {
    torch.cat,
    torch.flatten,
    torch.relu,
    torch.mean,
    F.relu,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.dropout,
    operator.getitem,
    getattr,
}
_METHODS = {
    "view",
    "reshape",
    "flatten",
    "size",
    "dim",
    "permute",
    "transpose",
    "contiguous",
    "relu",
    "mean",
    "squeeze",
    "unsqueeze",
    "add",
}

_PLANS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[str, type], ...], Plan | None]] = (
    weakref.WeakKeyDictionary()
)


def scaling_plan(model: nn.Module, named: list[tuple[str, nn.Module]] | None = None) -> Plan | None:
    """The float32 plan of ``model`` (None where the rescaling is not provably exact).

    Traced once per model object and kept while the object lives (the 100 rounds of one
    pruning share it); a change of the model's modules traces it again. ``named``: the
    model's ``named_modules()``, when the caller has them.
    """
    named = list(model.named_modules()) if named is None else named
    signature = tuple((name, type(m)) for name, m in named)
    cached = _PLANS.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    plan = _make_plan(model)
    _PLANS[model] = (signature, plan)
    return plan


def _make_plan(model: nn.Module) -> Plan | None:
    # traced as it is scored, in eval mode: a traced train-mode forward runs the model's own
    # Python (timm's BatchNormAct2d bumps num_batches_tracked in place); modes restored after
    with preserved(model):
        try:
            model.eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graph = torch.fx.symbolic_trace(model).graph
        except Exception:  # noqa: BLE001 - any model fx cannot trace scores in float64
            return None
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    outputs = [n for n in nodes if n.op == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        return None
    from_input = _reach(inputs[0], lambda n: n.users)
    to_output = _reach(outputs[0], lambda n: n.all_input_nodes)
    if not to_output <= from_input:  # a constant or parameter enters the output
        return None
    modules = dict(model.named_modules())
    called = [n.target for n in nodes if n.op == "call_module"]
    if len(called) != len(set(called)):
        return None
    relevant = [n for n in nodes if n in to_output and n.op not in ("placeholder", "output")]
    if not all(_homogeneous(n, modules) for n in relevant):
        return None
    cuts = _cuts(nodes, set(relevant) | {inputs[0], outputs[0]})
    params = {n for n, _ in model.named_parameters()}
    buffers = {n for n, _ in model.named_buffers()}
    scaled: list[str] = []
    additive: list[list[str]] = []  # terms before the first cut keep factor 1: left out
    weighted = 0  # weighted layers since the last scaled cut
    for node in relevant:
        if node.op != "call_module":
            continue
        module = modules[str(node.target)]
        terms = _additive_terms(str(node.target), module)
        if any(t not in params and t not in buffers for t in terms):  # shared under another name
            return None
        if scaled:  # this module's own terms come before its output is scaled
            additive[-1] += terms
        weighted += isinstance(module, _WEIGHTED)
        if node in cuts and weighted >= SCALE_EVERY:
            scaled.append(str(node.target))
            additive.append([])
            weighted = 0
    return Plan(
        cuts=tuple(scaled),
        additive=tuple(tuple(t) for t in additive),
        nonnegative=_nonnegative_gradients(relevant, inputs[0], modules),
    )


def _nonnegative_gradients(relevant: list[Any], source: Any, modules: dict[str, nn.Module]) -> bool:
    """Whether ∂R/∂W ≥ 0 for every weighted layer, so that |θ ⊙ ∂R/∂θ| needs no |·| pass.

    ∂R/∂W = δ ⊗ a: δ sums products of |W|ᵀ, |γ|/√(σ² + ε), ReLU and pooling factors, all ≥ 0
    unless the graph subtracts or scales by a negative number; a, the layer's input, is ≥ 0
    when it comes from the all-ones input or a ReLU through sign-keeping operations (a
    BatchNorm output may be negative: it subtracts its running mean)."""
    nonneg = {source}
    for node in relevant:
        if node.op == "call_function" and node.target in (operator.sub, torch.sub):
            return False
        negative = any(isinstance(v, (int, float)) and v < 0 for v in node.args)
        if node.op == "call_function" and node.target in _SCALINGS and negative:
            return False
        module = modules[str(node.target)] if node.op == "call_module" else None
        if isinstance(module, nn.LeakyReLU) and module.negative_slope < 0:
            return False
        inputs = node.all_input_nodes
        if isinstance(module, _WEIGHTED) and not all(a in nonneg for a in inputs):
            return False
        relu = (
            isinstance(module, nn.ReLU)
            or (node.op == "call_function" and node.target in (torch.relu, F.relu))
            or (node.op == "call_method" and node.target == "relu")
        )
        shape = node.op == "call_method" and node.target in ("size", "dim")
        if relu or shape or (not isinstance(module, _BN) and all(a in nonneg for a in inputs)):
            nonneg.add(node)
    return True


def _additive_terms(name: str, module: nn.Module) -> list[str]:
    prefix = f"{name}." if name else ""
    terms = []
    if isinstance(module, (*_WEIGHTED, *_BN)) and getattr(module, "bias", None) is not None:
        terms.append(prefix + "bias")
    if isinstance(module, _BN):
        terms.append(prefix + "running_mean")
    return terms


def _reach(start: Any, step: Any) -> set[Any]:
    seen = {start}
    todo = [start]
    while todo:
        for n in step(todo.pop()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def _cuts(nodes: list[Any], relevant: set[Any]) -> set[Any]:
    """Nodes every input→output path passes through: in topological order, those no edge
    between relevant nodes jumps over."""
    pos = {n: i for i, n in enumerate(nodes)}
    jumped = [0] * (len(nodes) + 1)
    for v in relevant:
        for u in v.all_input_nodes:
            if u in relevant and pos[v] - pos[u] > 1:
                jumped[pos[u] + 1] += 1
                jumped[pos[v]] -= 1
    out, depth = set(), 0
    for i, n in enumerate(nodes):
        depth += jumped[i]
        if depth == 0 and n in relevant:
            out.add(n)
    return out


def _homogeneous(node: Any, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is a degree-1 positively homogeneous operation of the |θ| network."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        if type(module) not in _MODULES:
            return False
        if isinstance(module, _BN):
            return module.running_mean is not None and module.running_var is not None
        return True
    if node.op == "call_function":
        if node.target in _SUMS:
            return all(isinstance(a, torch.fx.Node) for a in node.args) and "alpha" not in node.kwargs
        if node.target in _SCALINGS:
            a, b = (*node.args, None, None)[:2]
            if node.target is operator.truediv:
                return isinstance(a, torch.fx.Node) and isinstance(b, (int, float))
            return sum(isinstance(v, torch.fx.Node) for v in (a, b)) == 1 and any(
                isinstance(v, (int, float)) for v in (a, b)
            )
        return node.target in _FUNCTIONS
    if node.op == "call_method":
        if node.target == "add":
            return all(isinstance(a, torch.fx.Node) for a in node.args) and not node.kwargs
        return node.target in _METHODS
    return False


@hookimpl
def register_scorers(register):  # type: ignore[no-untyped-def]
    register(SynFlow)
