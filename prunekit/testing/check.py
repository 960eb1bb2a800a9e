"""The sanity-check contract (:class:`~prunekit.interfaces.SanityCheck`): :func:`check_sanity_check`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from prunekit.data import ArrayData, make_generator
from prunekit.defaults import KIT_SAMPLE_SCORERS
from prunekit.interfaces import (
    FAMILIES,
    Method,
    SanityCheck,
    TicketContext,
)
from prunekit.layers import PrunableLayer, prunable_layers
from prunekit.masks import Masks
from prunekit.sentinels import CLEAN_CHECK, DENSE_METHOD
from prunekit.testing.fixtures import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    call_plugin,
    differs,
    fail,
    identical,
    layer_names,
    random_half_masks,
    random_scores,
    resolve,
    single_threaded,
    tiny_convnet,
    tiny_data,
)

STAGES: tuple[str, ...] = ("pruning_data", "scores", "ticket")


def _sample_methods() -> list[Method]:
    out = []
    for family in FAMILIES:
        for scorer in (None,) if family == DENSE_METHOD else (*KIT_SAMPLE_SCORERS, None):
            out.append(
                Method(
                    name=f"kit_{family}_{scorer}",
                    description="the kit's sample method",
                    family=family,
                    scorer=scorer,
                )
            )
    return out


@single_threaded
def check_sanity_check(name_or_cls: str | type[SanityCheck] | SanityCheck, **options: Any) -> None:
    """Check a sanity check against the contract of :class:`~prunekit.interfaces.SanityCheck`.

    ``stages`` is a non-empty set of real stages and ``applies_to`` of real families;
    ``not_applicable`` is the core's (not overridden) and ``refuses`` returns None or a str.
    At every declared stage the check must change something (only the ``none`` check may do nothing), give the same result for the same
    generator seed, and: ``pruning_data`` — return new uint8 images and labels in range without
    changing its input; ``scores`` — return one tensor per layer, shaped like the input, that
    selects other weights, without changing its input; ``ticket`` — return boolean
    :class:`~prunekit.masks.Masks` of the layers' shapes without changing the given masks.
    """
    subject, check = resolve("sanity_check", name_or_cls, options)
    stages = getattr(check, "stages", None)
    if not isinstance(stages, (set, frozenset)) or not stages:
        fail(
            subject,
            f"its stages are {stages!r}",
            f"a non-empty frozenset of {', '.join(STAGES)}",
            'Declare e.g. stages: ClassVar[frozenset[Stage]] = frozenset({"ticket"}).',
        )
    for stage in sorted(map(str, stages)):
        if stage not in STAGES:
            fail(subject, f"its stage is {stage!r}", f"one of {', '.join(STAGES)}")
    if type(check).not_applicable is not SanityCheck.not_applicable:
        fail(
            subject,
            "it overrides not_applicable()",
            "the core's not_applicable(), which derives the family and pruning-data rules "
            "from applies_to and stages",
            "Give a reason of the check's own in refuses(method) instead.",
        )
    applies = check.applies_to
    if not set(applies) <= set(FAMILIES):
        fail(
            subject,
            f"applies_to names unknown families {sorted(set(applies) - set(FAMILIES))}",
            f"families among {', '.join(FAMILIES)}",
        )
    for method in _sample_methods():
        for uses_data in (True, False):
            reason = call_plugin(
                subject,
                f"for the kit's {method.family} sample method",
                check.not_applicable,
                method,
                uses_data,
            )
            if reason is not None and not (isinstance(reason, str) and reason.strip()):
                fail(
                    subject,
                    f"not_applicable({method.family} method, uses_data={uses_data}) "
                    f"returned {reason!r}",
                    "None (the check applies) or a non-empty str saying why it does not",
                    "refuses(method) returns None or a one-line reason.",
                )
    is_none = check.name == CLEAN_CHECK
    for st in sorted(stages, key=STAGES.index):
        changed = {
            "pruning_data": _check_data_stage,
            "scores": _check_scores_stage,
            "ticket": _check_ticket_stage,
        }[st](subject, check)
        hook = {
            "pruning_data": "perturb_data",
            "scores": "perturb_scores",
            "ticket": "perturb_ticket",
        }[st]
        if not changed and not is_none:
            fail(
                subject,
                f"it declares stage {st!r} but {hook}() changed nothing on the kit's tiny inputs",
                f"a perturbation at every declared stage (only the {CLEAN_CHECK!r} check may be a no-op)",
                f"Implement {hook}(), or declare the stage it acts on.",
            )
        if changed and is_none:
            fail(
                subject,
                f"{hook}() changed its input",
                f"the {CLEAN_CHECK!r} check to leave everything as it is",
            )


def _check_data_stage(subject: str, check: SanityCheck) -> bool:
    where = "at stage 'pruning_data' on the kit's 48 training images (3 classes, uint8 1×8×8)"
    at = f"{subject} {where}"

    def run() -> tuple[ArrayData, ArrayData]:
        data = tiny_data().train
        return data, call_plugin(
            subject, where, check.perturb_data, data, NUM_CLASSES, make_generator(0, "kit-check")
        )

    clean = tiny_data().train
    data, out = run()
    if not isinstance(out, ArrayData):
        fail(at, f"perturb_data() returned a {type(out).__name__}", "a prunekit.data.ArrayData")
    if not (identical(data.x, clean.x) and identical(data.y, clean.y)):
        fail(
            at,
            "perturb_data() changed its input in place",
            "a new ArrayData, the input untouched (final training uses the clean data)",
        )
    if out.x.dtype != torch.uint8 or tuple(out.x.shape[1:]) != IMAGE_SHAPE:
        fail(
            at,
            f"perturb_data() returned images {out.x.dtype} {tuple(out.x.shape)}",
            f"uint8 images (N, {', '.join(map(str, IMAGE_SHAPE))}) like the input",
        )
    if len(out) == 0:
        fail(at, "perturb_data() returned no samples", "at least one sample")
    if out.y.dtype != torch.int64 or not bool(((out.y >= 0) & (out.y < NUM_CLASSES)).all()):
        fail(
            at,
            f"perturb_data() returned labels {out.y.dtype} in "
            f"{out.y.min().item()}..{out.y.max().item()}",
            f"int64 labels in 0..{NUM_CLASSES - 1}",
        )
    _, again = run()
    if not (identical(out.x, again.x) and identical(out.y, again.y)):
        fail(
            at,
            "two calls with generators of the same seed gave different data",
            "the same perturbation for the same generator",
            "Draw everything from the generator argument.",
        )
    return not (out.x.shape == clean.x.shape and identical(out.x, clean.x) and identical(out.y, clean.y))


def _check_scores_stage(subject: str, check: SanityCheck) -> bool:
    layers = tuple(prunable_layers(tiny_convnet()))
    where = f"at stage 'scores' on the kit's conv net ({layer_names(layers)})"
    at = f"{subject} {where}"
    clean = random_scores(layers, 0)

    def run() -> tuple[dict[str, torch.Tensor], Any]:
        scores = {n: s.clone() for n, s in clean.items()}
        return scores, call_plugin(
            subject, where, check.perturb_scores, scores, make_generator(0, "kit-check")
        )

    given, out = run()
    if not isinstance(out, Mapping) or set(out) != set(clean):
        fail(
            at,
            f"perturb_scores() returned {type(out).__name__} with keys "
            f"{sorted(map(str, out)) if isinstance(out, Mapping) else '-'}",
            f"a dict with the same layer names ({layer_names(layers)})",
        )
    for layer in layers:
        s = out[layer.name]
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != layer.shape:
            fail(
                f"{subject} on layer {layer.name!r} {where}",
                f"perturb_scores() returned {type(s).__name__} {tuple(getattr(s, 'shape', ()))}",
                f"a tensor of shape {layer.shape}",
            )
        if bool(torch.isnan(s).any()):
            fail(
                f"{subject} on layer {layer.name!r} {where}",
                "perturb_scores() returned nan scores",
                "scores without nan",
            )
    if differs(given, clean):
        fail(at, "perturb_scores() changed its input in place", "new tensors, the input untouched")
    _, again = run()
    if differs(dict(out), dict(again)):
        fail(
            at,
            "two calls with generators of the same seed gave different scores",
            "the same perturbation for the same generator",
        )
    return _top_half(clean, layers) != _top_half(dict(out), layers)


def _top_half(
    scores: Mapping[str, torch.Tensor], layers: Sequence[PrunableLayer]
) -> list[list[int]]:
    """The positions a top-half selection keeps in every layer (what the scores decide)."""
    return [
        sorted(torch.topk(scores[la.name].flatten().double(), la.numel // 2).indices.tolist())
        for la in layers
    ]


def _ticket(seed: int) -> tuple[TicketContext, Masks, dict[str, torch.Tensor]]:
    model = tiny_convnet()
    layers = prunable_layers(model)
    masks = random_half_masks(model, layers, 0)
    params = dict(model.named_parameters())
    unpruned = {la.name: params[la.name].detach().clone() for la in layers}
    masks.apply(model)
    ticket = TicketContext(
        model=model,
        masks=masks,
        unpruned=unpruned,
        generator=make_generator(seed, "kit-check"),
        init_model=lambda s: tiny_convnet(seed=s),
    )
    return (
        ticket,
        Masks({n: m.clone() for n, m in masks.items()}),
        {n: t.detach().clone() for n, t in model.state_dict().items()},
    )


def _check_ticket_stage(subject: str, check: SanityCheck) -> bool:
    layers = tuple(prunable_layers(tiny_convnet()))
    where = f"at stage 'ticket' on the kit's conv net ({layer_names(layers)}, half of every layer kept)"
    at = f"{subject} {where}"
    ticket, masks_before, state_before = _ticket(0)
    out = call_plugin(subject, where, check.perturb_ticket, ticket)
    if not isinstance(out, Masks):
        fail(
            at,
            f"perturb_ticket() returned a {type(out).__name__}",
            "a prunekit.masks.Masks (e.g. Masks({name: bool tensor}))",
        )
    if list(out) != [la.name for la in layers]:
        fail(
            at,
            f"perturb_ticket() returned masks for {list(out)}",
            f"masks for exactly the layers ({layer_names(layers)})",
        )
    for layer in layers:
        m = out[layer.name]
        if m.dtype != torch.bool or tuple(m.shape) != layer.shape:
            fail(
                f"{subject} on layer {layer.name!r} {where}",
                f"the returned mask is {m.dtype} {tuple(m.shape)}",
                f"torch.bool of shape {layer.shape}",
            )
    for name, before in masks_before.items():
        if not identical(before, ticket.masks[name]):
            fail(
                f"{subject} on layer {name!r} {where}",
                "perturb_ticket() changed the mask tensor it was given in place",
                "new mask tensors in the returned Masks, the given ones untouched",
            )
    state = {n: t.detach().clone() for n, t in ticket.model.state_dict().items()}
    again_ticket, _, _ = _ticket(0)
    again = call_plugin(subject, where, check.perturb_ticket, again_ticket)
    if not out.equals(again) or any(
        not identical(state[n], t) for n, t in again_ticket.model.state_dict().items()
    ):
        fail(
            at,
            "two calls on the same ticket with generators of the same seed gave different tickets",
            "the same masks and weights for the same generator",
            "Draw everything from ticket.generator.",
        )
    return not out.equals(masks_before) or any(not identical(state_before[n], state[n]) for n in state)
