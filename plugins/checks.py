"""Sanity checks (Su et al. 2020, Frankle et al. 2021) and their composition.

``none`` is the clean reference run. The others perturb one stage of the pipeline
(see :class:`~prunekit.interfaces.SanityCheck`):

* pruning data — ``random_labels``, ``random_pixels``, ``half_dataset`` and
  ``corrupted_data`` (random labels and random pixels together);
* scores — ``score_inversion``;
* ticket — ``layerwise_rearrange``, ``layerwise_weight_shuffle``, ``reinit``.

Which paper runs which: Su et al. 2020 — random labels, corrupted data and layerwise
rearrange on initial tickets; half dataset and layerwise weight shuffle on partially-trained
(and hybrid) tickets. Frankle et al. 2021 — layerwise shuffling of the *mask*
(``layerwise_rearrange``), reinitialisation (``reinit``) and score inversion
(``score_inversion`` with ``scope="global"``) on pruning-at-initialisation methods.
Options that follow the authors' code are documented on each check and in
``docs/reproducing.md``.

Everything random is drawn from the generator the pipeline passes (derived from the run seed),
so a seed fixes every perturbation bit for bit. ``perturb_data`` and ``perturb_scores`` return
new objects and never change their inputs; ``perturb_ticket`` changes the model's prunable
weights in place (leaving it consistent with the masks it returns) and never changes the mask
tensors it was given. :class:`ComposedCheck` (built with :func:`compose`) applies several checks
in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import nn

from prunekit import (
    CLEAN_CHECK,
    FAMILIES,
    ArrayData,
    Masks,
    Method,
    PrunekitError,
    SanityCheck,
    Stage,
    TicketContext,
    hookimpl,
    lookup,
    names,
    noop_field,
)
from prunekit.data import stratified_split

DATA_DEPENDENT: frozenset[str] = frozenset({"initial", "partially_trained", "hybrid"})
TICKETS: frozenset[str] = frozenset(FAMILIES) - {"dense"}

# random_pixels draws its permutations this many values at a time (memory bound). Part of the
# reproducibility contract: changing it changes the permutations a seed gives.
_PIXEL_CHUNK_VALUES = 1 << 22


def _one_of(*values: str) -> Any:
    """A validator whose error is one readable line (attrs' ``in_`` prints the whole field)."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in values:
            raise ValueError(f"{attribute.name!r} must be one of {', '.join(values)}; got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class NoCheck(SanityCheck):
    """The clean run every perturbed run is compared with."""

    name: ClassVar[str] = CLEAN_CHECK
    description: ClassVar[str] = "no perturbation: the clean reference"
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})
    applies_to: ClassVar[frozenset[str]] = frozenset(FAMILIES)


# ------------------------------------------------------------------------------ pruning data
@attrs.frozen(kw_only=True)
class RandomLabels(SanityCheck):
    """Every label of the pruning data replaced by one drawn uniformly over the classes.

    A new label may equal the old one (probability 1/classes), as in Su et al. Images are kept
    (the same tensor). Only the data used for pruning (scoring batch, dense pre-training) is
    changed; final training uses the clean labels.

    ``seed``: None (the default) draws the labels from the run seed, so each seed of a suite
    sees other labels. An integer fixes them for every run, drawn as the authors' code does
    (Su et al. 2020, ``CIFAR10RandomLabels`` with ``np.random.seed(12345)``): numpy's legacy
    ``RandomState(seed)``, ``rand(N)`` (their corruption mask, always true at probability 1),
    then ``choice(classes, N)`` — with 12345 on CIFAR's training split, their labels exactly.
    """

    name: ClassVar[str] = "random_labels"
    description: ClassVar[str] = "pruning data with labels drawn uniformly at random"
    stages: ClassVar[frozenset[Stage]] = frozenset({"pruning_data"})
    applies_to: ClassVar[frozenset[str]] = DATA_DEPENDENT

    seed: int | None = noop_field(
        None, validator=attrs.validators.optional([attrs.validators.instance_of(int), attrs.validators.ge(0)])
    )

    def perturb_data(self, data: ArrayData, num_classes: int, generator: torch.Generator) -> ArrayData:
        if num_classes < 1:
            raise PrunekitError(f"random_labels needs at least one class, got {num_classes}")
        if self.seed is None:
            labels = torch.randint(0, num_classes, (len(data),), generator=generator, dtype=torch.int64)
        else:
            state = np.random.RandomState(self.seed)
            state.rand(len(data))  # the authors' corruption mask: consumed, all true
            labels = torch.from_numpy(state.choice(num_classes, len(data)).astype(np.int64))
        return ArrayData(x=data.x, y=labels.to(data.y.device))


@attrs.frozen(kw_only=True)
class RandomPixels(SanityCheck):
    """Each image's values permuted over C·H·W, one random permutation per image; labels kept.

    The permuted images are computed once into a new tensor, so every epoch of pre-training
    and every scoring batch sees the same permutation of a given image (Zhang et al. 2017's
    "random pixels" with a per-image permutation). Permutations are the argsort of float64
    uniforms drawn on the CPU, so they do not depend on the device the data lives on.
    """

    name: ClassVar[str] = "random_pixels"
    description: ClassVar[str] = "pruning data with each image's pixels permuted (fixed per image)"
    stages: ClassVar[frozenset[Stage]] = frozenset({"pruning_data"})
    applies_to: ClassVar[frozenset[str]] = DATA_DEPENDENT

    def perturb_data(self, data: ArrayData, num_classes: int, generator: torch.Generator) -> ArrayData:
        n = len(data)
        flat = data.x.reshape(n, -1)
        d = flat.shape[1]
        out = torch.empty_like(flat)
        rows = max(1, _PIXEL_CHUNK_VALUES // max(d, 1))
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            keys = torch.rand((stop - start, d), generator=generator, dtype=torch.float64)
            perm = torch.argsort(keys, dim=1, stable=True).to(flat.device)
            out[start:stop] = flat[start:stop].gather(1, perm)
        return ArrayData(x=out.view(data.x.shape), y=data.y)


@attrs.frozen(kw_only=True)
class HalfDataset(SanityCheck):
    """Pruning (dense pre-training and scoring) sees a fixed half of the training set.

    ``subset="seeded"`` (the default) draws the half from the run seed: stratified (the default)
    keeps ``round(fraction · n_class)`` samples of every class (so class balance is kept and the
    total is within one sample per class of half); ``stratified=False`` takes
    ``round(fraction · N)`` samples regardless of class. ``subset="first"`` takes the first
    ``round(fraction · N)`` rows in the dataset's own order, whatever their classes and seed
    (``stratified`` is then unused): the authors' code (Su et al. 2020, ``baseline.py
    --max_batch_idx 390``) trains on the first 390 batches of 64 of an unshuffled loader, i.e.
    the first 24,960 CIFAR training images (``fraction = 0.4992``). Their loader also keeps that
    order in every epoch; prunekit's trainer reshuffles it each epoch. The rows keep their
    original order. The subset is drawn once, so it is the same in every epoch; final training
    uses all the data.
    """

    name: ClassVar[str] = "half_dataset"
    description: ClassVar[str] = "dense pre-training on a fixed (stratified) half of the training set"
    stages: ClassVar[frozenset[Stage]] = frozenset({"pruning_data"})
    applies_to: ClassVar[frozenset[str]] = frozenset({"partially_trained", "hybrid"})

    fraction: float = attrs.field(
        default=0.5, validator=[attrs.validators.gt(0.0), attrs.validators.lt(1.0)]
    )
    stratified: bool = True
    subset: str = noop_field("seeded", validator=_one_of("seeded", "first"))

    def perturb_data(self, data: ArrayData, num_classes: int, generator: torch.Generator) -> ArrayData:
        if self.subset == "first":
            index = torch.arange(round(self.fraction * len(data)))
        elif self.stratified:
            index, _ = stratified_split(data.y, self.fraction, generator)
        else:
            n = len(data)
            pick = torch.randperm(n, generator=generator)[: round(self.fraction * n)]
            index = torch.sort(pick).values
        if index.numel() == 0:
            raise PrunekitError(
                f"half_dataset kept no samples of {len(data)}; use more data or a larger fraction"
            )
        return data.subset(index.to(data.x.device))


# ------------------------------------------------------------------------------------ scores
@attrs.frozen(kw_only=True)
class ScoreInversion(SanityCheck):
    """Keep the lowest-scored weights instead of the highest (Frankle et al. 2021).

    ``scope="per_layer"`` (the default) negates the scores *after* the layer budgets were
    computed from the clean scores, so every layer keeps as many weights as the method would,
    but the ones it ranks last: only the ranking inside each layer is tested.
    ``scope="global"`` negates them *before*, so the method's schedule allocates on the
    inverted scores — for a ``global`` schedule one threshold over all inverted scores, which
    moves the layer budgets too. That is Frankle et al. 2021's inversion (their OpenLTH branch
    prunes the highest scores under the global threshold, ``--prune_highest``). For schedules
    whose budgets ignore the scores (``uniform``, ``erk``, ``smart_ratio``) the two agree.

    Meaningless for random scores (inverting i.i.d. noise is noise), so methods whose scorer
    declares the ``random`` trait are refused, as are dense methods.
    """

    name: ClassVar[str] = "score_inversion"
    description: ClassVar[str] = "keep the lowest scores (under the method's own layer budgets, or globally)"
    stages: ClassVar[frozenset[Stage]] = frozenset({"scores"})
    applies_to: ClassVar[frozenset[str]] = DATA_DEPENDENT

    scope: str = noop_field("per_layer", validator=_one_of("per_layer", "global"))

    def scores_before_budgets(self) -> bool:
        return self.scope == "global"

    def refuses(self, method: Method) -> str | None:
        if method.scorer is None:
            return f"{method.name} computes no scores, so there is nothing to invert"
        if _random_scorer(method.scorer):
            return f"{method.name} scores at random, and inverted random scores are random scores"
        return None

    def perturb_scores(
        self, scores: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        return {name: torch.neg(s) for name, s in scores.items()}


def _random_scorer(name: str) -> bool:
    """Whether the registered scorer ``name`` declares the ``random`` trait (False for a name
    not registered: the method's own resolution reports it)."""
    return name in names("scorer") and bool(getattr(lookup("scorer", name), "random", False))


# ------------------------------------------------------------------------------------ ticket
def _fresh_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (), generator=generator))


def _weights(model: nn.Module, masks: Masks, what: str) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    missing = [n for n in masks if n not in params]
    if missing:
        raise PrunekitError(
            f"{what} has no parameter(s) {', '.join(missing[:3])} that the masks name; "
            "init_model must build the same architecture as the pruned model"
        )
    return {n: params[n] for n in masks}


def _fresh_weights(
    model: nn.Module, masks: Masks, generator: torch.Generator, init_model: Callable[[int], nn.Module]
) -> dict[str, torch.Tensor]:
    """The prunable weights of a fresh initialisation (seed drawn from ``generator``), shaped,
    typed and placed like the model's."""
    fresh = _weights(init_model(_fresh_seed(generator)), masks, "the model built by init_model")
    current = _weights(model, masks, "the model")
    out = {}
    for name, w in current.items():
        f = fresh[name].detach()
        if f.shape != w.shape:
            raise PrunekitError(
                f"init_model built {name} of shape {tuple(f.shape)}, the model has {tuple(w.shape)}; "
                "it must build the same architecture"
            )
        out[name] = f.to(device=w.device, dtype=w.dtype)
    return out


@attrs.frozen(kw_only=True)
class LayerwiseRearrange(SanityCheck):
    """Each layer's mask replaced by a uniformly random one with the same kept count.

    Su et al. 2020's "layerwise rearrange" and Frankle et al. 2021's "layerwise shuffling"
    (the mask shuffled inside each layer, OpenLTH's ``--randomize_layerwise``).

    Every kept position of the new mask takes the ticket's own *unpruned* weight there (θ₀ for
    initial tickets, θ_k or θ_T for rewound ones, as ``ticket.unpruned`` holds them), so only
    the positions change, never the distribution they are drawn from; newly pruned positions
    are zeroed.
    """

    name: ClassVar[str] = "layerwise_rearrange"
    description: ClassVar[str] = "each layer's mask permuted at random (kept count per layer unchanged)"
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})
    applies_to: ClassVar[frozenset[str]] = TICKETS

    @torch.no_grad()
    def perturb_ticket(self, ticket: TicketContext) -> Masks:
        model, masks, generator = ticket.model, ticket.masks, ticket.generator
        weights = _weights(model, masks, "the model")
        new_masks = {}
        for name, mask in masks.items():
            k = int(mask.sum())
            flat = torch.zeros(mask.numel(), dtype=torch.bool)
            flat[torch.randperm(mask.numel(), generator=generator)[:k]] = True
            new_masks[name] = flat.view(mask.shape).to(mask.device)
        for name, w in weights.items():
            new = new_masks[name].to(w.device)
            values = ticket.unpruned[name].to(device=w.device, dtype=w.dtype)
            w.copy_(torch.where(new, values, torch.zeros_like(w)))
        return Masks(new_masks)


@attrs.frozen(kw_only=True)
class LayerwiseWeightShuffle(SanityCheck):
    """The surviving weights of each layer permuted among that layer's surviving positions.

    The mask is kept; each layer keeps the multiset of its surviving values. This is Su et al.
    2020's check for partially-trained (and hybrid) tickets (``--shuffle_unmasked_weights`` in
    their code): trained values moved to other kept positions. It is *not* Frankle et al.
    2021's layerwise shuffling, which shuffles the mask (``layerwise_rearrange``); on an initial
    ticket, permuting i.i.d. init values inside a layer is nearly the same experiment as
    ``reinit``. Every ticket family may still use it. Only prunable weights move; biases and
    normalisation parameters are untouched.
    """

    name: ClassVar[str] = "layerwise_weight_shuffle"
    description: ClassVar[str] = "surviving weights permuted among the surviving positions of each layer"
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})
    applies_to: ClassVar[frozenset[str]] = TICKETS

    @torch.no_grad()
    def perturb_ticket(self, ticket: TicketContext) -> Masks:
        model, masks, generator = ticket.model, ticket.masks, ticket.generator
        for name, w in _weights(model, masks, "the model").items():
            mask = masks[name].to(w.device)
            values = w[mask]
            perm = torch.randperm(values.numel(), generator=generator).to(w.device)
            shuffled = torch.zeros_like(w)
            shuffled[mask] = values[perm]
            w.copy_(shuffled)
        return masks


@attrs.frozen(kw_only=True)
class Reinit(SanityCheck):
    """Surviving weights re-drawn from the init distribution; the mask is kept (Frankle et al.).

    The new values are the prunable weights of a fresh initialisation ``init_model(seed)`` at the
    surviving positions, ``seed`` drawn from the check's generator, so each layer keeps its own
    init distribution (e.g. Kaiming with its fan). Biases and normalisation parameters are left
    as the ticket has them (unlike Ma et al.'s re-initialisation of the whole network).
    """

    name: ClassVar[str] = "reinit"
    description: ClassVar[str] = "surviving weights re-drawn from the init distribution, mask kept"
    stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"})
    applies_to: ClassVar[frozenset[str]] = TICKETS

    @torch.no_grad()
    def perturb_ticket(self, ticket: TicketContext) -> Masks:
        model, masks, generator, init_model = ticket.model, ticket.masks, ticket.generator, ticket.init_model
        fresh = _fresh_weights(model, masks, generator, init_model)
        for name, w in _weights(model, masks, "the model").items():
            mask = masks[name].to(w.device)
            w.copy_(torch.where(mask, fresh[name], torch.zeros_like(w)))
        return masks


# ------------------------------------------------------------------------------- composition
@attrs.frozen(kw_only=True)
class ComposedCheck(SanityCheck):
    """Several checks applied in order, e.g. random labels then random pixels.

    Its stages are the union of its components' stages and it applies to the families every
    component applies to (and only where no component refuses the method). At each stage the
    components acting there are applied in order, sharing the pipeline's generator. Its name
    joins the components' names with ``+``.
    """

    checks: tuple[SanityCheck, ...] = attrs.field(converter=tuple)

    @checks.validator
    def _check_components(self, attribute: attrs.Attribute, value: tuple[SanityCheck, ...]) -> None:
        if not value:
            raise ValueError("a composed check needs at least one check")
        bad = [c for c in value if not isinstance(c, SanityCheck)]
        if bad:
            raise ValueError(f"not sanity checks: {bad!r}")

    @property  # type: ignore[misc]
    def name(self) -> str:  # type: ignore[override]
        return "+".join(c.name for c in self.checks)

    @property  # type: ignore[misc]
    def description(self) -> str:  # type: ignore[override]
        return "; then ".join(c.description for c in self.checks)

    @property  # type: ignore[misc]
    def stages(self) -> frozenset[Stage]:  # type: ignore[override]
        return frozenset().union(*(c.stages for c in self.checks))

    @property  # type: ignore[misc]
    def applies_to(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset(FAMILIES).intersection(*(c.applies_to for c in self.checks))

    def refuses(self, method: Method) -> str | None:
        """The first reason a component gives of its own."""
        for c in self.checks:
            reason = c.refuses(method)
            if reason:
                return reason
        return None

    def _at(self, stage: str) -> list[SanityCheck]:
        return [c for c in self.checks if stage in c.stages]

    def scores_before_budgets(self) -> bool:
        """Whether any score component acts before the budgets (then all of them do)."""
        return any(c.scores_before_budgets() for c in self._at("scores"))

    def perturb_data(self, data: ArrayData, num_classes: int, generator: torch.Generator) -> ArrayData:
        for c in self._at("pruning_data"):
            data = c.perturb_data(data, num_classes, generator)
        return data

    def perturb_scores(
        self, scores: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        for c in self._at("scores"):
            scores = c.perturb_scores(scores, generator)
        return scores

    def perturb_ticket(self, ticket: TicketContext) -> Masks:
        model, masks = ticket.model, ticket.masks
        for c in self._at("ticket"):
            masks = c.perturb_ticket(attrs.evolve(ticket, masks=masks))
            masks.apply(model)
        return masks


def compose(*checks: SanityCheck | None) -> SanityCheck | None:
    """One check doing all of ``checks`` in order.

    ``None`` and the ``none`` check are dropped and plain :class:`ComposedCheck` components
    flattened (named compositions such as ``corrupted_data`` stay one component); no check
    left gives None, a single one is returned as it is, several give a :class:`ComposedCheck`.
    """
    flat: list[SanityCheck] = []
    for c in checks:
        if c is None or isinstance(c, NoCheck):
            continue
        flat.extend(c.checks if type(c) is ComposedCheck else (c,))
    if not flat:
        return None
    if len(flat) == 1:
        return flat[0]
    return ComposedCheck(checks=tuple(flat))


@attrs.frozen(kw_only=True)
class CorruptedData(ComposedCheck):
    """Su et al.'s "corrupted data": random labels, then random pixels, of the pruning data."""

    name: ClassVar[str] = "corrupted_data"  # type: ignore[misc]
    description: ClassVar[str] = "pruning data with random labels and randomly permuted pixels"  # type: ignore[misc]

    checks: tuple[SanityCheck, ...] = attrs.field(
        init=False, factory=lambda: (RandomLabels(), RandomPixels()), converter=tuple
    )


BUILTIN_CHECKS: tuple[type[SanityCheck], ...] = (
    NoCheck,
    RandomLabels,
    RandomPixels,
    HalfDataset,
    CorruptedData,
    ScoreInversion,
    LayerwiseRearrange,
    LayerwiseWeightShuffle,
    Reinit,
)


@hookimpl
def register_sanity_checks(register):  # type: ignore[no-untyped-def]
    for check in BUILTIN_CHECKS:
        register(check)
