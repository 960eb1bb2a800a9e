"""Layer budgets: ``global``, ``uniform``, ``erk`` and ``smart_ratio`` (with its ablation variants).

* ``global`` — one threshold over all scores, exactly ``round(density · total)`` kept (ties at
  the threshold shared among layers, then broken by a seeded random choice inside a layer);
* ``uniform`` — every layer keeps the target density;
* ``erk`` — Erdős–Rényi-Kernel densities (Evci et al. 2020), dense layers redistributed;
* ``smart_ratio`` — the data-free budgets of Su et al. 2020 ("random tickets"), see
  :class:`SmartRatio` for the exact arithmetic and how it follows the authors' code.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import attrs
import torch

from prunekit import PrunableLayer, PrunekitError, RatioSchedule, hookimpl, noop_field


@attrs.frozen(kw_only=True)
class Global(RatioSchedule):
    """One threshold over every layer's scores, keeping exactly ``round(density · total)``.

    Every weight scored above the global threshold is kept. The weights tied *at* the threshold
    fill the rest: they are shared among the layers in proportion to how many tied weights each
    layer holds (largest remainder; equal remainders go to the earlier layer), and inside a
    layer the pipeline picks which tied weights by a random permutation seeded from the run
    seed (see :mod:`prunekit.selection`). So a scorer whose scores are mostly exactly 0 (SNIP
    on a timm ResNet with zero-initialised last BatchNorms) still gets the asked sparsity.
    """

    name: ClassVar[str] = "global"
    description: ClassVar[str] = "one score threshold over all layers (ties at the threshold shared, seeded)"

    # ``dense_classifier``: keep the classifier (the last prunable Linear layer) whole and put one
    # threshold over the other layers only, still keeping ``round(density · total)`` weights in
    # all (sparsity counted over every prunable layer, so the others are pruned harder). The
    # lottery-ticket code of Su et al. 2020 (``LT_prune.py``) prunes this way; off by default.
    dense_classifier: bool = noop_field(False, validator=attrs.validators.instance_of(bool))

    def _with_dense_classifier(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        linear = [layer for layer in layers if layer.kind == "linear"]
        if not linear:
            raise PrunekitError(
                "the global schedule's dense_classifier keeps the last Linear layer whole, but the "
                "model has no prunable Linear layer; set dense_classifier = false"
            )
        head = linear[-1]
        body = [layer for layer in layers if layer.name != head.name]
        k = round(density * sum(layer.numel for layer in layers))
        if k < head.numel:
            raise PrunekitError(
                f"density {density:.4g} keeps {k:,} weights, fewer than the {head.numel:,} of the "
                f"classifier {head.name} that dense_classifier keeps whole; lower the sparsity or "
                "set dense_classifier = false"
            )
        rest = sum(layer.numel for layer in body)
        plain = attrs.evolve(self, dense_classifier=False)
        counts = plain.allocate(body, (k - head.numel) / rest, scores) if rest else {}
        return {layer.name: counts.get(layer.name, layer.numel) for layer in layers}

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        if self.dense_classifier:
            return self._with_dense_classifier(layers, density, scores)
        total = sum(layer.numel for layer in layers)
        k = round(density * total)
        if k >= total:
            return {layer.name: layer.numel for layer in layers}
        if k <= 0:
            return {layer.name: 0 for layer in layers}
        flat = torch.cat([scores[layer.name].detach().flatten().double() for layer in layers])
        threshold = torch.kthvalue(flat, total - k + 1).values  # the k-th largest
        sizes = [layer.numel for layer in layers]
        above = [int(torch.count_nonzero(part)) for part in (flat > threshold).split(sizes)]
        tied = [int(torch.count_nonzero(part)) for part in (flat == threshold).split(sizes)]
        return {
            layer.name: a + t
            for layer, a, t in zip(layers, above, share_ties(tied, k - sum(above)))
        }


def share_ties(tied: Sequence[int], wanted: int) -> list[int]:
    """``wanted`` weights taken from groups of ``tied`` weights, in proportion to the groups.

    Integer arithmetic: group i gets ⌊wanted · tied_i / T⌋, then one more for the groups with
    the largest remainders (equal remainders: the earlier group), T = Σ tied. The shares sum to
    ``wanted`` exactly and no group gives more than it holds.
    """
    total = sum(tied)
    if not 0 <= wanted <= total:
        raise PrunekitError(f"cannot take {wanted} of {total} tied weights")
    if total == 0:
        return [0] * len(tied)
    shares = [wanted * t // total for t in tied]
    rest = wanted - sum(shares)
    order = sorted(range(len(tied)), key=lambda i: (-((wanted * tied[i]) % total), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares


@attrs.frozen(kw_only=True)
class Uniform(RatioSchedule):
    """Every layer keeps the same fraction of its weights."""

    name: ClassVar[str] = "uniform"
    description: ClassVar[str] = "every layer keeps the target density"

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        return {layer.name: round(density * layer.numel) for layer in layers}


# ------------------------------------------------------------------------------------ helpers
def _floor(x: float) -> int:
    """⌊x⌋, except that a value within 1e-9 (relative) of an integer counts as that integer.

    ``density = 1 - 0.9`` is 0.09999999999999998 in floating point, so ⌊N·density⌋ would lose
    a weight that the exact arithmetic (and the reference code's float32) keeps.
    """
    nearest = round(x)
    if abs(x - nearest) <= 1e-9 * max(1.0, abs(x)):
        return int(nearest)
    return math.floor(x)


ROUNDINGS: tuple[str, ...] = ("floor", "round", "ceil")


def _rounded(x: float, rounding: str) -> int:
    """``x`` rounded down (:func:`_floor`), to nearest, or up (within 1e-9 of an integer: it)."""
    nearest = round(x)
    if abs(x - nearest) <= 1e-9 * max(1.0, abs(x)):
        return int(nearest)
    if rounding == "floor":
        return math.floor(x)
    if rounding == "ceil":
        return math.ceil(x)
    return int(nearest)


def _largest_remainder(exact: Sequence[float], caps: Sequence[int], target: int) -> list[int]:
    """Integer counts ≤ ``caps`` near ``exact`` that sum to ``target`` when possible.

    Floors first, then one more weight for the layers with the largest fractional parts (ties
    by position), so every count is ⌊exact⌋ or ⌈exact⌉.
    """
    counts = [min(cap, max(0, math.floor(e))) for e, cap in zip(exact, caps)]
    missing = target - sum(counts)
    if missing > 0:
        order = sorted(
            (i for i, (e, c, cap) in enumerate(zip(exact, counts, caps)) if c < cap and e - c > 0),
            key=lambda i: (-(exact[i] - counts[i]), i),
        )
        for i in order[:missing]:
            counts[i] += 1
    return counts


# --------------------------------------------------------------------------------------- ERK
@attrs.frozen(kw_only=True)
class ERK(RatioSchedule):
    """Erdős–Rényi-Kernel budgets (Evci et al. 2020, "Rigging the Lottery").

    density_l = ε · ((Σ dims_l) / (Π dims_l)) ** power_scale, with ε chosen so the kept weights
    add up to the target. Layers whose density would exceed 1 are made dense and ε is solved
    again for the rest (the iterative procedure of the RigL code: each pass makes every layer
    with the largest raw density dense). Counts are the exact densities rounded by largest
    remainder, so they add up to ``round(density · total)`` exactly.
    """

    name: ClassVar[str] = "erk"
    description: ClassVar[str] = "Erdős–Rényi-Kernel layer densities (Evci et al. 2020)"

    power_scale: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))

    def densities(self, layers: Sequence[PrunableLayer], density: float) -> dict[str, float]:
        """The exact (unrounded) keep fraction of every layer."""
        raw = {
            layer.name: (sum(layer.shape) / layer.numel) ** self.power_scale for layer in layers
        }
        dense: set[str] = set()
        eps = 0.0
        while True:
            rhs = 0.0
            divisor = 0.0
            for layer in layers:
                if layer.name in dense:
                    rhs -= layer.numel * (1.0 - density)
                else:
                    rhs += layer.numel * density
                    divisor += raw[layer.name] * layer.numel
            if divisor <= 0.0:  # every layer dense
                break
            eps = rhs / divisor
            sparse = [layer.name for layer in layers if layer.name not in dense]
            top = max(raw[n] for n in sparse)
            if top * eps > 1.0:
                dense.update(n for n in sparse if raw[n] == top)
            else:
                break
        return {
            layer.name: 1.0 if layer.name in dense else min(1.0, max(0.0, eps * raw[layer.name]))
            for layer in layers
        }

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        dens = self.densities(layers, density)
        total = sum(layer.numel for layer in layers)
        counts = _largest_remainder(
            [dens[layer.name] * layer.numel for layer in layers],
            [layer.numel for layer in layers],
            min(total, round(density * total)),
        )
        return {layer.name: c for layer, c in zip(layers, counts)}


# ------------------------------------------------------------------------------- smart ratio
SMART_RATIO_VARIANTS: tuple[str, ...] = ("quadratic", "linear", "cubic", "ascending", "balanced")


def is_plain_chain(layers: Sequence[PrunableLayer]) -> bool:
    """Whether the conv layers form one plain chain, as in VGG.

    True when every conv layer's input channels (``shape[1]``) equal the previous conv layer's
    output channels (``shape[0]``). A 1×1 projection shortcut of a ResNet reads the block's
    input, not the previous conv's output, so ResNets with projections (``cifar_resnet20/32/56``)
    break the chain; ``cifar_vgg16_bn``, ``cifar_vgg19_bn`` and ``digits_cnn`` do not. Grouped
    convs also break it. ResNets whose shortcuts have no conv (option A) cannot be told from a
    VGG by their layers: pass ``vgg=False`` for them.
    """
    convs = [layer for layer in layers if layer.kind == "conv" and len(layer.shape) >= 2]
    return all(cur.shape[1] == prev.shape[0] for prev, cur in itertools.pairwise(convs))


@attrs.frozen(kw_only=True)
class SmartRatio(RatioSchedule):
    """Smart-ratio layer budgets of Su et al. 2020, arithmetic as in the authors' code.

    Layers ``l = 1..L`` in module order; the classifier (the last Linear layer) is layer ``L``
    and keeps ``⌊linear_keep_ratio · N_fc⌋`` weights. The other layers (``l = 1..L−1``, 1×1
    projection shortcuts included, numbered where they are registered) share

        K = ⌊N·density⌋ − ⌊linear_keep_ratio · N_fc⌋

    as follows (``N_l`` = weights of layer l, ``N`` = all prunable weights):

    * q_l = (L−l+1)² + (L−l+1) (``quadratic``); ``linear``: L−l+1; ``cubic``: (L−l+1)³;
      ``ascending``: l² + l; ``balanced``: 1 (every non-classifier layer at K / Σ N_l);
    * ``vgg``: q_l is divided by l² (the reference code does this for every architecture but
      its ResNet; not for ``balanced``). ``None`` (auto) uses it when the conv layers form a
      plain chain (:func:`is_plain_chain`): ``cifar_vgg16_bn`` / ``cifar_vgg19_bn`` /
      ``digits_cnn`` use it, ``cifar_resnet20/32/56`` do not;
    * γ = K / Σ_l ⌊N_l·q_l⌋ and p_l = γ·q_l;
    * overflow: walking from l = 1, a layer with p_l ≥ 1 is made dense and its excess
      ⌊(p_l−1)·N_l⌋ carried on; a later layer absorbs what fits in its ⌊(1−p_l)·N_l⌋ free
      weights (then keeps p_l + carried/N_l), or becomes dense and passes the rest on;
    * layer l keeps ⌊p_l·N_l⌋ weights (after the carry).

    ``rounding`` (``floor``, the default, as the authors' code) replaces ⌊·⌋ in the target
    ⌊N·density⌋, the classifier's share and every layer's count by rounding to the nearest
    integer (``round``) or up (``ceil``, as SynFlow's code rounds keep counts); the total stays
    within one weight per layer of ``round(N·density)`` either way.

    :meth:`densities` returns the fractions p_l (after the carry) — the numbers the paper's
    rows quote; :meth:`allocate` the floored counts. They differ by less than 1/N_l: e.g. the
    first conv of ``cifar_resnet32`` (864 weights) has p_1 = 79.84 % at 90 % sparsity and keeps
    ⌊0.7984·864⌋ = 689 weights (79.75 %).

    Outside the reference code's domain, three safeguards keep the total at the target (the
    reference would silently keep fewer or more weights): carried weights left over after the
    last layer are placed walking back from the last layer, then in the classifier (which takes
    the whole rest once every other layer is dense, so density 1 keeps everything); a target
    smaller than the classifier's share gives the classifier the whole target; and when
    ⌊·⌋ in γ's denominator makes the layers overshoot K by more than one weight per layer, the
    excess is removed walking from the first layer (never below one weight). A model without
    any Linear layer (classifier excluded by the policy) numbers its layers 1..L−1 with
    L = #layers + 1, as if the classifier were still there.
    """

    name: ClassVar[str] = "smart_ratio"
    description: ClassVar[str] = "smart-ratio budgets of random tickets (Su et al. 2020)"

    variant: str = attrs.field(default="quadratic", validator=attrs.validators.in_(SMART_RATIO_VARIANTS))
    vgg: bool | None = None
    linear_keep_ratio: float = attrs.field(
        default=0.3, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )
    rounding: str = noop_field("floor", validator=attrs.validators.in_(ROUNDINGS))

    def uses_vgg(self, layers: Sequence[PrunableLayer]) -> bool:
        return is_plain_chain(layers) if self.vgg is None else bool(self.vgg)

    def _q(self, layer: int, depth: int, vgg: bool) -> float:
        """The unnormalised keep ratio of the ``layer``-th of ``depth`` layers (l and L)."""
        k = depth - layer + 1
        if self.variant == "quadratic":
            q = float(k * k + k)
        elif self.variant == "linear":
            q = float(k)
        elif self.variant == "cubic":
            q = float(k**3)
        elif self.variant == "ascending":
            q = float(layer * layer + layer)
        else:  # balanced
            return 1.0
        return q / (layer * layer) if vgg else q

    def plan(self, layers: Sequence[PrunableLayer], density: float) -> tuple[dict[str, float], dict[str, int]]:
        """(keep fraction p_l after the carry, keep count) of every layer."""
        if not layers:
            raise PrunekitError("smart_ratio needs at least one prunable layer")
        if not 0.0 <= density <= 1.0:
            raise PrunekitError(f"density must be in [0, 1], got {density}")
        linear = [i for i, layer in enumerate(layers) if layer.kind == "linear"]
        cls = linear[-1] if linear else None
        body = [i for i in range(len(layers)) if i != cls]
        big_l = len(layers) if cls is not None else len(layers) + 1
        numel = [layer.numel for layer in layers]
        total = sum(numel)
        target = min(total, _rounded(total * density, self.rounding))
        fc_count = (
            0 if cls is None else min(_rounded(self.linear_keep_ratio * numel[cls], self.rounding), target)
        )
        budget = target - fc_count  # K

        vgg = self.uses_vgg(layers)
        q = [self._q(pos + 1, big_l, vgg) for pos in range(len(body))]
        n_body = [numel[i] for i in body]
        denominator = sum(_floor(n * qq) for n, qq in zip(n_body, q))
        if denominator > 0:
            p = [budget / denominator * qq for qq in q]
        else:  # every ⌊N_l·q_l⌋ is 0 (tiny layers): fall back to a balanced split
            p = [budget / sum(n_body) if n_body else 0.0] * len(body)

        fractions: list[float] = []
        counts: list[int] = []
        extra = 0 if body else budget  # a lone classifier takes the whole target
        for pl, n in zip(p, n_body):
            a = pl * n
            if pl >= 1.0:
                extra += _floor(a - n)
                counts.append(n)
                fractions.append(1.0)
            else:
                rest = _floor(n - a)
                if rest >= extra:
                    counts.append(min(n, _rounded(a + extra, self.rounding)))
                    fractions.append(pl + extra / n)
                    extra = 0
                else:
                    extra -= rest
                    counts.append(n)
                    fractions.append(1.0)
        # safeguards outside the reference's domain (see the class docstring)
        for j in reversed(range(len(body))):
            if extra <= 0:
                break
            take = min(extra, n_body[j] - counts[j])
            counts[j] += take
            extra -= take
            fractions[j] = counts[j] / n_body[j]
        if cls is not None and extra > 0:
            if all(c == n for c, n in zip(counts, n_body)):  # body dense: the rest is the fc's
                extra = max(extra, target - sum(counts) - fc_count)
            fc_count = min(numel[cls], fc_count + extra)
        overshoot = sum(counts) - budget
        if overshoot > len(body):
            for j in range(len(body)):
                if overshoot <= 0:
                    break
                take = min(overshoot, max(0, counts[j] - 1))
                counts[j] -= take
                overshoot -= take
                fractions[j] = counts[j] / n_body[j]

        out_frac = {layers[i].name: f for i, f in zip(body, fractions)}
        out_count = {layers[i].name: c for i, c in zip(body, counts)}
        if cls is not None:
            out_frac[layers[cls].name] = fc_count / numel[cls]
            out_count[layers[cls].name] = fc_count
        order = [layer.name for layer in layers]
        return {n: out_frac[n] for n in order}, {n: out_count[n] for n in order}

    def densities(self, layers: Sequence[PrunableLayer], density: float) -> dict[str, float]:
        """The keep fractions p_l (after the overflow carry), as the paper's tables quote them."""
        return self.plan(layers, density)[0]

    def allocate(
        self, layers: Sequence[PrunableLayer], density: float, scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        return self.plan(layers, density)[1]


@hookimpl
def register_ratio_schedules(register):  # type: ignore[no-untyped-def]
    register(Global)
    register(Uniform)
    register(ERK)
    register(SmartRatio)
