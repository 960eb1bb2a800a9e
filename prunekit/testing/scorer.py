"""The scorer contract (:class:`~prunekit.interfaces.Scorer`): :func:`check_scorer`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from prunekit.data import DataBundle, scoring_batches
from prunekit.interfaces import (
    DataRequest,
    Scorer,
    ScoringContext,
)
from prunekit.layers import PrunableLayer, prunable_layers
from prunekit.masks import Masks
from prunekit.testing.fixtures import (
    call_plugin,
    differs,
    fail,
    identical,
    kit_devices,
    max_change,
    random_half_masks,
    resolve,
    single_threaded,
    tiny_convnet,
    tiny_data,
    tiny_mlp,
)


@attrs.frozen
class _Case:
    """One tiny model the kit scores."""

    arch: str  # "conv net" | "MLP"
    dtype: torch.dtype
    train_mode: bool
    half_masks: bool
    device: torch.device

    def build(self, seed: int = 0) -> nn.Module:
        make = tiny_convnet if self.arch == "conv net" else tiny_mlp
        model = make(seed=seed, dtype=self.dtype).to(self.device)
        return model.train(self.train_mode)

    def __str__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        kept = "half the weights masked" if self.half_masks else "no weight masked"
        mode = "train" if self.train_mode else "eval"
        return f"on the kit's {self.arch} ({dtype}, {mode} mode, {self.device.type}, {kept})"


def _scorer_cases() -> list[_Case]:
    cpu = torch.device("cpu")
    cases = [
        _Case("conv net", torch.float32, True, False, cpu),
        _Case("MLP", torch.float32, False, True, cpu),
        _Case("conv net", torch.float64, False, False, cpu),
    ]
    cases += [
        _Case("conv net", torch.float32, True, True, d) for d in kit_devices() if d.type != "cpu"
    ]
    return cases

@attrs.define
class _Snapshot:
    """What a scorer must leave as it found it."""

    state: dict[str, torch.Tensor]
    params: dict[str, int]
    modes: dict[str, bool]
    requires_grad: dict[str, bool]
    masks: dict[str, torch.Tensor]
    rng: torch.Tensor

    @classmethod
    def take(cls, model: nn.Module, masks: Masks) -> _Snapshot:
        return cls(
            state={
                n: t.detach().clone()
                for n, t in [*model.named_parameters(), *model.named_buffers()]
            },
            params={n: id(p) for n, p in model.named_parameters()},
            modes={n or "(the model)": m.training for n, m in model.named_modules()},
            requires_grad={n: p.requires_grad for n, p in model.named_parameters()},
            masks={n: m.clone() for n, m in masks.items()},
            rng=torch.get_rng_state(),
        )

    def compare(self, subject: str, where: str, model: nn.Module, masks: Masks) -> None:
        params = dict(model.named_parameters())
        replaced = [n for n, i in self.params.items() if n not in params or id(params[n]) != i]
        if replaced:
            fail(
                f"{subject} {where}",
                f"score() replaced the parameter object(s) {', '.join(replaced)}",
                "the model's parameters left as they were",
                "Work on a copy if you must change the model.",
            )
        current = dict([*model.named_parameters(), *model.named_buffers()])
        for name, before in self.state.items():
            now = current.get(name)
            if now is None or not identical(before, now):
                what = "weight" if name in params else "buffer (e.g. BatchNorm running statistics)"
                change = "" if now is None else f" (max change {max_change(before, now):.3g})"
                fail(
                    f"{subject} {where}",
                    f"score() changed the {what} {name}{change}",
                    "the model's weights and buffers bit for bit unchanged "
                    "(scorers must not mutate the model)",
                    "Restore them in a finally block, keep BatchNorm statistics (save and "
                    "restore the buffers) or score a copy of the model.",
                )
        modes = {n or "(the model)": m.training for n, m in model.named_modules()}
        flipped = [n for n, mode in self.modes.items() if modes.get(n) != mode]
        if flipped:
            fail(
                f"{subject} {where}",
                f"score() left module(s) {', '.join(flipped)} in "
                f"{'train' if modes.get(flipped[0]) else 'eval'} mode",
                "every module's train/eval flag restored",
                "Save `m.training` of every module and restore it in a finally block.",
            )
        changed = [n for n, flag in self.requires_grad.items() if params[n].requires_grad != flag]
        if changed:
            fail(
                f"{subject} {where}",
                f"score() changed requires_grad of {', '.join(changed)}",
                "requires_grad restored",
                "Use torch.autograd.grad on the weights and restore the flags in a finally block.",
            )
        with_grad = [n for n, p in params.items() if p.grad is not None]
        if with_grad:
            fail(
                f"{subject} {where}",
                f"score() left gradients in .grad of {', '.join(with_grad)}",
                "no .grad left on the model",
                "Use torch.autograd.grad(loss, weights) instead of loss.backward().",
            )
        for name, before in self.masks.items():
            if name not in masks or not identical(before, masks[name]):
                fail(
                    f"{subject} {where}",
                    f"score() changed the mask of layer {name}",
                    "ctx.masks untouched (the pipeline owns the masks)",
                )
        if not torch.equal(self.rng, torch.get_rng_state()):
            fail(
                f"{subject} {where}",
                "score() drew from torch's global random number generator (its state changed)",
                "randomness drawn only from ctx.generator(...)",
                "Use ctx.generator('my_scorer', layer.name) so the seed fixes the scores and "
                "other code is not disturbed.",
            )

def _validate_scores(
    subject: str, where: str, scores: Any, layers: Sequence[PrunableLayer], model: nn.Module
) -> dict[str, torch.Tensor]:
    at = f"{subject} {where}"
    if not isinstance(scores, Mapping):
        fail(
            at, f"score() returned a {type(scores).__name__}", "a dict {layer name: score tensor}"
        )
    names = [layer.name for layer in layers]
    missing = [n for n in names if n not in scores]
    if missing:
        fail(
            at,
            f"score() returned no scores for layer(s) {', '.join(missing)}",
            "one tensor per prunable layer, keyed by layer.name for layer in ctx.layers "
            f"({', '.join(names)})",
        )
    extra = [str(n) for n in scores if n not in names]
    if extra:
        fail(
            at,
            f"score() returned scores for name(s) that are not prunable layers: {', '.join(extra)}",
            f"exactly the names of ctx.layers ({', '.join(names)})",
        )
    storages = {p.untyped_storage().data_ptr(): n for n, p in model.named_parameters()}
    device = next(model.parameters()).device
    for layer in layers:
        s = scores[layer.name]
        here = f"{subject} on layer {layer.name!r} of {where.removeprefix('on ')}"
        if not isinstance(s, torch.Tensor):
            fail(here, f"the scores are a {type(s).__name__}", "a torch.Tensor")
        if tuple(s.shape) != layer.shape:
            fail(
                here,
                f"the scores have shape {tuple(s.shape)}",
                f"shape {layer.shape}, the shape of the layer's weight (one score per weight)",
            )
        if not s.is_floating_point():
            fail(here, f"the scores have dtype {s.dtype}", "a floating-point tensor")
        if s.device != device:
            fail(
                here,
                f"the scores are on {s.device}, the model is on {device}",
                "scores on the model's device (ctx.device)",
                "Create tensors with device=ctx.device or .to(ctx.device).",
            )
        finite = torch.isfinite(s)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            fail(
                here,
                f"{bad} of {s.numel()} scores are not finite (nan or inf)",
                "finite scores",
                "Score in float64, clamp, or guard divisions by zero.",
            )
        if s.requires_grad:
            fail(
                here,
                "the scores still require grad (they hold the autograd graph)",
                "detached tensors",
                "Return s.detach().",
            )
        if s.numel() and s.untyped_storage().data_ptr() in storages:
            fail(
                here,
                "the scores share memory with the parameter "
                f"{storages[s.untyped_storage().data_ptr()]}",
                "a new tensor (masking the model later would change the scores)",
                "Return .clone() of it.",
            )
    return {layer.name: scores[layer.name] for layer in layers}

def _first_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> str:
    for n in a:
        if not identical(a[n], b[n]):
            return f"layer {n!r} (max difference {max_change(a[n], b[n]):.3g})"
    return "no layer"


def _constant(scores: Mapping[str, torch.Tensor]) -> bool:
    return all(bool((s == s.flatten()[0]).all()) for s in scores.values() if s.numel())

@single_threaded
def check_scorer(name_or_cls: str | type[Scorer] | Scorer, **options: Any) -> None:
    """Check a scorer against the contract of :class:`~prunekit.interfaces.Scorer`.

    On the kit's tiny models (conv net with BatchNorm in train and eval mode, MLP with half of
    its weights masked, float32 and float64, CUDA when available): one finite, detached float
    tensor per prunable layer, of the layer's shape, on the model's device; the same scores
    from two calls with the same seed; no change to the model's weights, buffers, train/eval
    flags, ``requires_grad``, ``.grad``, to the masks or to torch's global RNG. Scores that
    depend on neither the weights nor the data (random-like) must change with the seed;
    ``needs_data = True`` scorers must use the data.
    """
    subject, scorer = resolve("scorer", name_or_cls, options)
    needs_data = getattr(scorer, "needs_data", None)
    if not isinstance(needs_data, bool):
        fail(subject, f"needs_data is {needs_data!r}", "a bool class variable")
    data = tiny_data()
    for i, case in enumerate(_scorer_cases()):
        model = case.build()
        layers = tuple(prunable_layers(model))
        masks = (
            random_half_masks(model, layers, 0)
            if case.half_masks
            else Masks.ones(model, [la.name for la in layers])
        )
        masks.apply(model)
        ctx = _scoring_context(subject, case, scorer, model, layers, masks, data, seed=0)
        before = _Snapshot.take(model, masks)
        first = call_plugin(subject, str(case), scorer.score, model, ctx)
        before.compare(subject, str(case), model, masks)
        first = _validate_scores(subject, str(case), first, layers, model)
        again = _validate_scores(
            subject, str(case), call_plugin(subject, str(case), scorer.score, model, ctx), layers, model
        )
        if differs(first, again):
            fail(
                f"{subject} {case}",
                "two calls with the same seed gave different scores for "
                f"{_first_difference(first, again)}",
                "identical scores for the same model, data and seed",
                "Draw randomness only from ctx.generator(...) and avoid non-deterministic ops.",
            )
        if i == 0:
            _check_scorer_inputs(subject, case, scorer, model, layers, masks, data, ctx, first)


def _scoring_context(
    subject: str,
    case: _Case,
    scorer: Scorer,
    model: nn.Module,
    layers: tuple[PrunableLayer, ...],
    masks: Masks,
    data: DataBundle,
    *,
    seed: int,
) -> ScoringContext:
    request = call_plugin(subject, str(case), scorer.data_request, model, data)
    if request is not None and not (
        isinstance(getattr(request, "samples_per_class", None), int)
        and request.samples_per_class > 0
        and isinstance(getattr(request, "iterations", None), int)
        and request.iterations > 0
    ):
        fail(
            f"{subject} {case}",
            f"data_request() returned {request!r}",
            "None or a prunekit.interfaces.DataRequest with positive samples_per_class and "
            "iterations",
        )
    if scorer.needs_data and request is None:
        fail(
            f"{subject} {case}",
            "needs_data is True but data_request() returned None (no batches)",
            "a DataRequest",
            "Set needs_data = False for a data-free scorer.",
        )
    if isinstance(request, DataRequest) and request.samples_per_class > 16:
        data = tiny_data(per_class=request.samples_per_class)
    batches = scoring_batches(data, request, seed, case.device)
    return ScoringContext(
        layers=layers,
        masks=masks,
        batches=batches,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=seed,
        device=case.device,
    )


def _check_scorer_inputs(
    subject: str,
    case: _Case,
    scorer: Scorer,
    model: nn.Module,
    layers: tuple[PrunableLayer, ...],
    masks: Masks,
    data: DataBundle,
    ctx: ScoringContext,
    scores: dict[str, torch.Tensor],
) -> None:
    """Which inputs the scores depend on: seed, weights, data."""
    where = str(case)
    other_seed = _validate_scores(
        subject,
        where,
        call_plugin(subject, where, scorer.score, model, attrs.evolve(ctx, seed=1)),
        layers,
        model,
    )
    other_model = case.build(seed=1)
    masks.apply(other_model)
    on_other = _validate_scores(
        subject, where, call_plugin(subject, where, scorer.score, other_model, ctx), layers, other_model
    )
    uses_weights = differs(scores, on_other)
    uses_data = False
    if ctx.batches:
        other_data = _scoring_context(
            subject, case, scorer, model, layers, masks, tiny_data(seed=1), seed=0
        )
        on_data = _validate_scores(
            subject, where, call_plugin(subject, where, scorer.score, model, other_data), layers, model
        )
        uses_data = differs(scores, on_data)
    if scorer.needs_data and not uses_data:
        fail(
            f"{subject} {where}",
            "needs_data is True but the scores did not change when the scoring data changed",
            "scores computed from ctx.batches",
            "Set needs_data = False if the scorer is data-free (data sanity checks then skip it).",
        )
    if (
        not uses_weights
        and not uses_data
        and not _constant(scores)
        and not differs(scores, other_seed)
    ):
        fail(
            f"{subject} {where}",
            "its scores depend on neither the weights nor the data, so they are random, but "
            "seeds 0 and 1 gave identical scores",
            "a different random draw for every seed (ctx.seed)",
            "Draw them from ctx.generator('my_scorer', layer.name), which is seeded from ctx.seed.",
        )
