"""prunekit-gradnorm: an example prunekit plugin.

It registers one object of each kind a pruning researcher usually adds:

* ``grad_norm`` (scorer) — |∂L/∂θ|, the gradient magnitude on class-balanced scoring batches;
* ``first_dense`` (ratio schedule) — the first and last prunable layers dense, the others at
  one density that hits the target;
* ``sign_flip`` (sanity check) — flips the sign of a random half of the ticket's surviving
  weights;
* ``grad_norm`` (method) — ``grad_norm`` scores with one global threshold.

prunekit finds this module through the entry point ``[project.entry-points.prunekit]`` of
``pyproject.toml`` and calls the ``register_*`` hooks below. ``docs/plugins.md`` in prunekit
walks through every line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import (
    FAMILIES,
    DataBundle,
    DataRequest,
    Masks,
    Method,
    PrunableLayer,
    RatioSchedule,
    SanityCheck,
    Scorer,
    ScoringContext,
    Stage,
    TicketContext,
    hookimpl,
)
from prunekit.scoring import grad_enabled_on, preserved, prunable_weights

__version__ = "0.1.0"

# The major version of prunekit's hook specifications this plugin was written for; prunekit
# reports (and does not load) a plugin built for another major version.
PRUNEKIT_HOOKSPEC_VERSION = 2


# ------------------------------------------------------------------------------------ scorer
@attrs.frozen(kw_only=True)
class GradNorm(Scorer):
    """|∂L/∂θ|: the magnitude of the loss gradient, summed over the scoring batches.

    L is the cross-entropy of every class-balanced scoring batch (``iterations`` batches of
    ``samples_per_class`` samples per class, all on the model's device); the gradients of the
    batches are summed, then the absolute value is taken. The model runs in train mode (as SNIP
    scores a fresh model) and is left exactly as it came: modes, BatchNorm statistics and
    ``.grad`` untouched (``torch.autograd.grad`` returns the gradients instead of storing them).
    """

    name: ClassVar[str] = "grad_norm"
    description: ClassVar[str] = "gradient magnitude |∂L/∂θ| on class-balanced scoring batches"
    needs_data: ClassVar[bool] = True

    samples_per_class: int = attrs.field(default=10, validator=attrs.validators.gt(0))
    iterations: int = attrs.field(default=1, validator=attrs.validators.gt(0))

    def data_request(self, model: nn.Module, data: DataBundle) -> DataRequest:
        return DataRequest(samples_per_class=self.samples_per_class, iterations=self.iterations)

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        if not ctx.batches:
            raise ValueError("grad_norm needs scoring batches (it is a data-dependent scorer)")
        weights = prunable_weights(model, ctx)
        total = [torch.zeros_like(w, memory_format=torch.contiguous_format) for w in weights]
        # every module's train/eval flag, every buffer (BatchNorm running statistics) and every
        # requires_grad flag are back as they were when the block ends
        with preserved(model, buffers=True), grad_enabled_on(weights):
            model.train()
            for x, y in ctx.batches:
                loss = F.cross_entropy(model(x.to(weights[0].dtype)), y)  # batches are float32
                torch._foreach_add_(total, torch.autograd.grad(loss, weights))
        return {layer.name: g.abs_() for layer, g in zip(ctx.layers, total)}


# ---------------------------------------------------------------------------------- schedule
def _spread(layers: Sequence[PrunableLayer], budget: int) -> dict[str, int]:
    """``budget`` weights over ``layers`` at one density, exactly: floors of the exact shares
    (integer arithmetic), then one more weight for the largest remainders (ties: earlier layer)."""
    size = sum(layer.numel for layer in layers)
    counts = [budget * layer.numel // size for layer in layers]
    remainders = [budget * layer.numel % size for layer in layers]
    order = sorted(range(len(layers)), key=lambda i: (-remainders[i], i))
    for i in order[: budget - sum(counts)]:
        counts[i] += 1
    return {layer.name: c for layer, c in zip(layers, counts)}


@attrs.frozen(kw_only=True)
class FirstDense(RatioSchedule):
    """The first and the last prunable layer keep every weight; the layers between them keep
    one common fraction, chosen so that the total is ``round(density · total)`` exactly.

    The first layer sees the raw input and the last one produces the logits; both are small and
    pruning them hurts most, which many pruning papers acknowledge by leaving them dense. When
    the target is smaller than those two layers together (very high sparsity), or the model has
    at most two prunable layers, every layer gets the same fraction instead (uniform).
    """

    name: ClassVar[str] = "first_dense"
    description: ClassVar[str] = (
        "first and last layer dense, the others at one density that hits the target"
    )

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        total = sum(layer.numel for layer in layers)
        target = min(total, round(density * total))
        ends = (layers[0], layers[-1]) if len(layers) > 2 else ()
        dense = sum(layer.numel for layer in ends)
        if not ends or target < dense:
            return _spread(layers, target)
        counts = {layer.name: layer.numel for layer in ends}
        counts.update(_spread(layers[1:-1], target - dense))
        return {layer.name: counts[layer.name] for layer in layers}


# ----------------------------------------------------------------------------- sanity check
@attrs.frozen(kw_only=True)
class SignFlip(SanityCheck):
    """Flip the sign of a random ``fraction`` of the ticket's surviving weights.

    What it tests: whether the ticket relies on the *signs* of the weights it keeps. The mask
    and every magnitude stay as they are, so the layer budgets and the weight scale of every
    layer are untouched; only sign information is destroyed. Zhou et al. (2019, "Deconstructing
    Lottery Tickets") found that signs carry much of what makes a lottery ticket work, so a
    method whose tickets lose accuracy under ``sign_flip`` passes the check. For tickets at a
    fresh initialisation drawn from a zero-mean symmetric distribution, random signs are just
    another draw of the same initialisation, so a method that only uses the *positions* of
    its weights should be insensitive to it.

    Each surviving weight flips independently with probability ``fraction``, drawn from the
    check's generator (CPU), so a seed fixes the flips on every device.
    """

    name: ClassVar[str] = "sign_flip"
    description: ClassVar[str] = (
        "the signs of a random half of the surviving weights flipped (mask and magnitudes kept)"
    )
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})
    applies_to: ClassVar[frozenset[str]] = frozenset(FAMILIES) - {"dense"}

    fraction: float = attrs.field(
        default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)]
    )

    @torch.no_grad()
    def perturb_ticket(self, ticket: TicketContext) -> Masks:
        params = dict(ticket.model.named_parameters())
        for name, mask in ticket.masks.items():
            w = params[name]
            flip = torch.rand(w.shape, generator=ticket.generator) < self.fraction
            flip = flip.to(w.device) & mask.to(w.device)
            w.copy_(torch.where(flip, -w, w))
        return ticket.masks


# ------------------------------------------------------------------------------------ method
GRAD_NORM = Method(
    name="grad_norm",
    description="|∂L/∂θ| on a class-balanced batch, one global threshold",
    family="initial",
    citation="prunekit-gradnorm example plugin",
    scorer="grad_norm",
    schedule="global",
)


# ------------------------------------------------------------------------------------- hooks
@hookimpl
def register_scorers(register):  # type: ignore[no-untyped-def]
    register(GradNorm)


@hookimpl
def register_ratio_schedules(register):  # type: ignore[no-untyped-def]
    register(FirstDense)


@hookimpl
def register_sanity_checks(register):  # type: ignore[no-untyped-def]
    register(SignFlip)


@hookimpl
def register_methods(register):  # type: ignore[no-untyped-def]
    register(GRAD_NORM)
