"""Data-free scorers: ``magnitude`` (|θ|) and ``random`` (seeded uniform scores)."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from prunekit import Scorer, ScoringContext, hookimpl


@attrs.frozen(kw_only=True)
class Magnitude(Scorer):
    """|θ| of the current weights (at initialisation or after training)."""

    name: ClassVar[str] = "magnitude"
    description: ClassVar[str] = "weight magnitude |θ|"
    needs_data: ClassVar[bool] = False

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {layer.name: params[layer.name].detach().abs().clone() for layer in ctx.layers}


@attrs.frozen(kw_only=True)
class Random(Scorer):
    """i.i.d. uniform scores drawn from the run seed (the same seed gives the same scores)."""

    name: ClassVar[str] = "random"
    description: ClassVar[str] = "i.i.d. uniform random scores from the run seed"
    needs_data: ClassVar[bool] = False
    random: ClassVar[bool] = True

    def score(self, model: nn.Module, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        out = {}
        for layer in ctx.layers:
            g = ctx.generator("random", layer.name)
            out[layer.name] = torch.rand(layer.shape, generator=g).to(ctx.device)
        return out


@hookimpl
def register_scorers(register):  # type: ignore[no-untyped-def]
    register(Magnitude)
    register(Random)
