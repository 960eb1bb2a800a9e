"""The ratio-schedule contract (:class:`~prunekit.interfaces.RatioSchedule`): :func:`check_schedule`."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any, Literal

import torch

from prunekit.data import make_generator
from prunekit.interfaces import (
    RatioSchedule,
)
from prunekit.layers import PrunableLayer, prunable_layers
from prunekit.testing.fixtures import (
    call_plugin,
    fail,
    identical,
    layer_names,
    random_scores,
    resolve,
    single_threaded,
    tiny_convnet,
    tiny_mlp,
)

SCHEDULE_DENSITIES: tuple[float, ...] = (1.0, 0.5, 0.2, 0.05, 0.01, 0.001)


def _layer_sets() -> list[tuple[str, tuple[PrunableLayer, ...]]]:
    shapes: list[tuple[Literal["conv", "linear"], tuple[int, ...]]] = [
        ("conv", (16, 3, 3, 3)),
        ("conv", (16, 16, 3, 3)),
        ("conv", (32, 16, 3, 3)),
        ("conv", (32, 32, 3, 3)),
        ("conv", (64, 32, 1, 1)),
        ("conv", (64, 64, 3, 3)),
        ("linear", (10, 64)),
    ]
    wide = tuple(
        PrunableLayer(name=f"layer{i}.weight", module=f"layer{i}", kind=kind, shape=shape, index=i)
        for i, (kind, shape) in enumerate(shapes)
    )
    return [
        ("the kit's conv net", tuple(prunable_layers(tiny_convnet()))),
        ("the kit's MLP", tuple(prunable_layers(tiny_mlp()))),
        ("a 7-layer CIFAR-like stack", wide),
    ]

@single_threaded
def check_schedule(name_or_cls: str | type[RatioSchedule] | RatioSchedule, **options: Any) -> None:
    """Check a ratio schedule against the contract of :class:`~prunekit.interfaces.RatioSchedule`.

    On three layer stacks and densities 1.0 down to 0.001: one integer keep count per layer in
    ``0..numel``; in total within one weight per layer of ``round(density · total)``; every layer
    dense at density 1.0; the same counts from two calls; the scores left untouched; scores with
    ``-inf`` at pruned positions (later rounds of iterative methods) handled; scores that are
    mostly exactly 0 (ties at the threshold) kept within the budget too.
    """
    subject, schedule = resolve("ratio_schedule", name_or_cls, options)
    for label, layers in _layer_sets():
        for j, density in enumerate(SCHEDULE_DENSITIES):
            scores = random_scores(layers, j, torch.float64 if j % 2 else torch.float32)
            _check_allocation(
                subject,
                schedule,
                f"on {label} ({layer_names(layers)}) at density {density}",
                layers,
                density,
                scores,
            )
        masked = {
            n: s.masked_fill(
                torch.rand(s.shape, generator=make_generator(1, n)) < 0.5, float("-inf")
            )
            for n, s in random_scores(layers, 99).items()
        }
        _check_allocation(
            subject,
            schedule,
            f"on {label} at density 0.25 with -inf scores at pruned positions",
            layers,
            0.25,
            masked,
        )
        # most scores exactly 0 (SNIP on a network with zero-initialised residual branches):
        # ties at the threshold must not push the count past the budget
        tied = {n: (s > 1.0).to(s.dtype) for n, s in random_scores(layers, 7).items()}
        _check_allocation(
            subject,
            schedule,
            f"on {label} at density 0.1 with most scores exactly 0 (ties)",
            layers,
            0.1,
            tied,
        )


def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is an integer (int, numpy or 0-dim tensor), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _check_allocation(
    subject: str,
    schedule: RatioSchedule,
    where: str,
    layers: tuple[PrunableLayer, ...],
    density: float,
    scores: dict[str, torch.Tensor],
) -> None:
    saved = {n: s.clone() for n, s in scores.items()}
    counts = call_plugin(subject, where, schedule.allocate, layers, density, scores)
    at = f"{subject} {where}"
    if not isinstance(counts, Mapping):
        fail(
            at, f"allocate() returned a {type(counts).__name__}", "a dict {layer name: keep count}"
        )
    names = [layer.name for layer in layers]
    missing = [n for n in names if n not in counts]
    extra = [str(n) for n in counts if n not in names]
    if missing or extra:
        fail(
            at,
            f"allocate() returned counts for {sorted(map(str, counts))}",
            f"one count per layer, keyed by layer.name ({', '.join(names)})",
        )
    got: dict[str, int] = {}
    for layer in layers:
        c = counts[layer.name]
        count = _as_int(c)
        if count is None:
            fail(
                f"{subject} on layer {layer.name!r} of {where.removeprefix('on ')}",
                f"the keep count is {c!r} ({type(c).__name__})",
                "an int (a number of weights)",
            )
        got[layer.name] = count
        if not 0 <= count <= layer.numel:
            fail(
                f"{subject} on layer {layer.name!r} of {where.removeprefix('on ')}",
                f"the keep count is {got[layer.name]}",
                f"a count in 0..{layer.numel} (the layer's weights)",
            )
    if density == 1.0:
        short = [layer.name for layer in layers if got[layer.name] != layer.numel]
        if short:
            fail(
                at,
                f"layer(s) {', '.join(short)} are not dense",
                "every layer kept whole at density 1.0",
            )
    total = sum(layer.numel for layer in layers)
    target = round(density * total)
    kept = sum(got.values())
    if abs(kept - target) > len(layers):
        fail(
            at,
            f"the counts keep {kept} of {total} weights (density {kept / total:.4g})",
            f"round({density} × {total}) = {target} within one weight per layer (±{len(layers)})",
        )
    for n, s in scores.items():
        if not identical(s, saved[n]):
            fail(
                at,
                f"allocate() changed the scores of layer {n} in place",
                "the scores untouched (selection uses them after allocate)",
            )
    again = call_plugin(subject, where, schedule.allocate, layers, density, scores)
    if not isinstance(again, Mapping) or any(_as_int(again.get(n)) != got[n] for n in names):
        fail(
            at,
            "two calls gave different counts",
            "the same counts for the same layers, density and scores",
        )
