"""Helpers for writing a scorer (public: plugins use them as the built-in scorers do).

A scorer gets the model itself, not a copy, and must leave it exactly as it came (see
:class:`~prunekit.interfaces.Scorer`). The usual shape::

    from prunekit.scoring import grad_enabled_on, preserved, prunable_weights, zero_filled

    def score(self, model, ctx):
        weights = prunable_weights(model, ctx)
        with preserved(model, buffers=True), grad_enabled_on(weights):
            model.train()
            for x, y in ctx.batches:
                loss = F.cross_entropy(model(x), y)
                grads = zero_filled(torch.autograd.grad(loss, weights, allow_unused=True), weights)
                ...

* :func:`preserved` — every module's train/eval flag (and, with ``buffers``, every buffer's
  values, e.g. BatchNorm running statistics) restored when the block ends, even on error;
* :func:`grad_enabled_on` — gradients on for the block, for weights that are frozen too;
* :func:`prunable_weights` — the parameters of ``ctx.layers``, in their order;
* :func:`zero_filled` — ``torch.autograd.grad(..., allow_unused=True)`` with zeros for ``None``;
* :func:`ieee_float32` — IEEE float32 convolutions and matmuls (no TF32) for the block, so
  masks on a GPU match the CPU's; :func:`run_scorer` — a scorer's scores inside it, the call
  the pipeline and the instruments make;
* :func:`bn_mode_validator`, :func:`optional_positive` — attrs validators for the usual options
  (``bn_mode`` of "train" or "eval"; a count that is None or positive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import torch
from torch import nn

from prunekit.interfaces import Scorer, ScoringContext

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], Any]


@contextmanager
def preserved(model: nn.Module, *, buffers: bool = False) -> Iterator[None]:
    """Restore every module's train/eval flag (and, with ``buffers``, every buffer's values)
    when the block ends, however it ends."""
    modes = [(m, m.training) for m in model.modules()]
    saved = [(b, b.detach().clone()) for b in model.buffers()] if buffers else []
    try:
        yield
    finally:
        if saved:
            with torch.no_grad():
                for b, value in saved:
                    b.copy_(value)
        for m, mode in modes:
            m.training = mode


@contextmanager
def grad_enabled_on(weights: Sequence[nn.Parameter]) -> Iterator[None]:
    """Make ``weights`` require grad, with autograd on, for the block (frozen weights are
    scored too); their ``requires_grad`` flags are restored afterwards."""
    flags = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)


@contextmanager
def ieee_float32() -> Iterator[None]:
    """IEEE float32 convolutions and matmuls on CUDA for the block, the settings restored after.

    cuDNN convolutions default to TF32 on Ampere and newer GPUs (a 10-bit mantissa): scores
    computed with it differ from the CPU's in the third digit, enough to move about 1.5% of a
    90%-sparse mask. Scoring is a small part of a run, so it always runs at full precision.
    The flags are global (they do nothing on a CPU), so they are set, not assumed."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul  # type: ignore[attr-defined]
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


def run_scorer(scorer: Scorer, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """``scorer``'s scores of ``model`` as the pipeline computes them (inside
    :func:`ieee_float32`): the one call for anything that scores, so that an instrument's
    scores are the pruning's."""
    with ieee_float32():
        return scorer.score(model, ctx)


def prunable_weights(model: nn.Module, ctx: ScoringContext) -> list[nn.Parameter]:
    """The parameters of ``ctx.layers``, in the same order."""
    params = dict(model.named_parameters())
    return [params[layer.name] for layer in ctx.layers]


def zero_filled(
    grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """Gradients with zeros (shaped as ``like``) for the weights the loss does not use."""
    return tuple(
        torch.zeros_like(w, requires_grad=False) if g is None else g for g, w in zip(grads, like)
    )


def bn_mode_validator() -> Validator:
    """An attrs validator: "train" or "eval" (the mode a scorer runs BatchNorm in)."""
    return attrs.validators.in_(("train", "eval"))


def optional_positive() -> Validator:
    """An attrs validator: None or a number > 0."""
    return attrs.validators.optional(attrs.validators.gt(0))


__all__ = [
    "Validator",
    "bn_mode_validator",
    "grad_enabled_on",
    "ieee_float32",
    "optional_positive",
    "preserved",
    "prunable_weights",
    "run_scorer",
    "zero_filled",
]
