"""From scores and layer budgets to masks: top-k by score inside every layer.

Tie-breaking
------------
Scores can tie: timm ResNets zero-initialise the last BatchNorm of every block, so most SNIP
scores of a fresh ``resnet18`` are exactly 0, and SynFlow gives exact zeros to cut-off weights.
Selection never keeps more (or fewer) weights than asked because of ties:

* inside a layer, :func:`select_top` keeps every weight scored above the layer's k-th largest
  score and fills the rest with tied weights; which tied weights is a seeded random choice
  (a random permutation of the tied positions drawn from ``generator``), or the lowest
  positions first when no generator is given;
* across layers, the ``global`` schedule shares the weights tied at the global threshold
  among the layers in proportion to how many tied weights each holds (largest remainder,
  ties by layer order), so the total is exactly ``round(density · total)``.

The pipeline seeds the generator from the run seed, the scoring round and the layer name, so
the same seed gives the same masks. :class:`TieStats` says how much of a selection ties
decided; the pipeline turns it into ``tie_fraction`` and ``warnings`` in the prune metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs
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


@attrs.frozen(kw_only=True)
class TieStats:
    """How much of a selection the tie-break decided.

    ``by_ties`` counts the kept weights drawn from a group of tied scores that was only partly
    kept (a group kept whole decided nothing); ``kept`` is every kept weight.
    """

    kept: int = 0
    by_ties: int = 0

    @property
    def fraction(self) -> float:
        """Fraction of the kept weights chosen by the tie-break (0.0 when nothing is kept)."""
        return self.by_ties / self.kept if self.kept else 0.0


GeneratorFor = Callable[[PrunableLayer], torch.Generator]


def select_top(
    layers: Sequence[PrunableLayer],
    scores: Mapping[str, torch.Tensor],
    counts: Mapping[str, int],
    *,
    generator: GeneratorFor | None = None,
) -> Masks:
    """Keep exactly ``counts[layer]`` weights with the highest scores in every layer.

    Ties at a layer's threshold are broken by a seeded random permutation of the tied
    positions when ``generator`` (a function from the layer to a CPU generator) is given, by
    position (lower index first) otherwise; either way the result is deterministic.
    """
    return select_top_with_stats(layers, scores, counts, generator=generator)[0]


def select_top_with_stats(
    layers: Sequence[PrunableLayer],
    scores: Mapping[str, torch.Tensor],
    counts: Mapping[str, int],
    *,
    generator: GeneratorFor | None = None,
) -> tuple[Masks, TieStats]:
    """:func:`select_top`, and how many kept weights the tie-break chose."""
    masks = {}
    kept_total = 0
    by_ties = 0
    for layer in layers:
        k = int(counts[layer.name])
        if not 0 <= k <= layer.numel:
            raise PrunekitError(f"keep count {k} for layer {layer.name} outside 0..{layer.numel}")
        flat = scores[layer.name].detach().flatten()
        mask = torch.zeros(layer.numel, dtype=torch.bool, device=flat.device)
        if k == layer.numel:
            mask.fill_(True)
        elif k > 0:
            # the k-th largest score, every score above it, then ties at it: a full sort's
            # result at a fraction of its cost
            values = flat.float() if flat.dtype in (torch.bfloat16, torch.float16) else flat
            threshold = torch.kthvalue(values, layer.numel - k + 1).values
            mask = values > threshold
            missing = k - int(torch.count_nonzero(mask))
            if missing > 0:
                ties = torch.nonzero(values == threshold, as_tuple=False).flatten()
                if ties.numel() > missing:
                    by_ties += missing
                    if generator is not None:
                        order = torch.randperm(ties.numel(), generator=generator(layer))
                        ties = ties[order[:missing].to(ties.device)]
                mask[ties[:missing]] = True
        kept_total += k
        masks[layer.name] = mask.view(layer.shape)
    return Masks(masks), TieStats(kept=kept_total, by_ties=by_ties)


def zero_fraction(
    scores: Mapping[str, torch.Tensor], layers: Sequence[PrunableLayer], masks: Masks | None = None
) -> float:
    """Fraction of the scores of still-kept weights (all weights without ``masks``) that are
    exactly zero."""
    zeros = 0
    candidates = 0
    for layer in layers:
        is_zero = scores[layer.name].detach() == 0
        if masks is not None and layer.name in masks:
            kept = masks[layer.name].to(is_zero.device)
            is_zero &= kept
            candidates += int(torch.count_nonzero(kept))
        else:
            candidates += layer.numel
        zeros += int(torch.count_nonzero(is_zero))
    return zeros / candidates if candidates else 0.0
