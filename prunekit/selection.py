"""From scores and layer budgets to masks: top-k by score inside every layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from prunekit.errors import PrunekitError
from prunekit.layers import PrunableLayer
from prunekit.masks import Masks


def check_scores(layers: Sequence[PrunableLayer], scores: Mapping[str, torch.Tensor], source: str) -> None:
    """Every layer has a finite score tensor of its shape, or a one-line error naming the layer."""
    for layer in layers:
        s = scores.get(layer.name)
        if s is None:
            raise PrunekitError(f"{source} returned no scores for layer {layer.name}")
        if tuple(s.shape) != layer.shape:
            raise PrunekitError(
                f"{source} returned scores of shape {tuple(s.shape)} for layer {layer.name}, "
                f"expected {layer.shape}"
            )
        if not torch.isfinite(s).all():
            bad = int((~torch.isfinite(s)).sum())
            raise PrunekitError(
                f"{source} returned {bad} non-finite scores (nan or inf) for layer {layer.name}; "
                "score in float64 or check the model for overflow"
            )


def exclude_pruned(scores: Mapping[str, torch.Tensor], masks: Masks | None) -> dict[str, torch.Tensor]:
    """Scores with already-pruned positions set to -inf, so they can never be selected again."""
    if masks is None:
        return dict(scores)
    return {
        n: s.masked_fill(~masks[n].to(s.device), float("-inf")) if n in masks else s
        for n, s in scores.items()
    }


def select_top(
    layers: Sequence[PrunableLayer], scores: Mapping[str, torch.Tensor], counts: Mapping[str, int]
) -> Masks:
    """Keep exactly ``counts[layer]`` weights with the highest scores in every layer.

    Ties are broken by position (lower index first), so the result is deterministic.
    """
    masks = {}
    for layer in layers:
        k = int(counts[layer.name])
        if not 0 <= k <= layer.numel:
            raise PrunekitError(f"keep count {k} for layer {layer.name} outside 0..{layer.numel}")
        flat = scores[layer.name].detach().flatten()
        mask = torch.zeros(layer.numel, dtype=torch.bool, device=flat.device)
        if k == layer.numel:
            mask.fill_(True)
        elif k > 0:
            # the k-th largest score, then every score above it and the first ties by position:
            # the same set as a stable descending sort, at a fraction of its cost
            values = flat.float() if flat.dtype in (torch.bfloat16, torch.float16) else flat
            threshold = torch.kthvalue(values, layer.numel - k + 1).values
            mask = values > threshold
            missing = k - int(mask.sum())
            if missing > 0:
                ties = torch.nonzero(values == threshold, as_tuple=False).flatten()[:missing]
                mask[ties] = True
        masks[layer.name] = mask.view(layer.shape)
    return Masks(masks)
