"""Conformance kit: does a plugin's scorer, schedule, check or method keep the contract?

Plugin authors call these from their own tests; each raises :class:`ConformanceError` (an
``AssertionError``) whose message says what was wrong, where (which layer, which tiny model,
which dtype) and what was expected::

    from prunekit.testing import check_method, check_sanity_check, check_schedule, check_scorer

    def test_my_scorer():
        check_scorer("my_scorer")            # a registered name, or the class itself
        check_scorer(MyScorer, rounds=3)     # with options

This module is also a pytest plugin (entry point ``pytest11``), so any test can ask for the
``prunekit_conformance`` fixture::

    def test_everything(prunekit_conformance):
        prunekit_conformance.check_plugin("myplugin")  # every object the plugin registered

The kit builds its own tiny models — a conv net with BatchNorm and a linear head, and an MLP —
on the CPU in float32 and float64 (plus CUDA when it is available), and a tiny 3-class dataset
of 8×8 images, and runs the object the way :func:`prunekit.pipeline.prune` does.
"""

from __future__ import annotations

import functools
import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn, TypeVar, cast

import attrs
import torch
from torch import nn

from prunekit import pipeline
from prunekit.data import ArrayData, DataBundle, channel_stats, make_generator
from prunekit.dense import DenseCache
from prunekit.errors import PrunekitError
from prunekit.interfaces import (
    FAMILIES,
    DataRequest,
    Method,
    RatioSchedule,
    SanityCheck,
    Scorer,
    ScoringContext,
    TicketContext,
    TrainConfig,
    Trainer,
)
from prunekit.layers import PrunableLayer, prunable_layers
from prunekit.masks import Masks
from prunekit.plugins import get_plugins, register_plugin, unregister_plugin

__all__ = [
    "ConformanceError",
    "check_method",
    "check_plugin",
    "check_sanity_check",
    "check_schedule",
    "check_scorer",
    "check_trainer",
    "tiny_convnet",
    "tiny_data",
    "tiny_mlp",
]

F = TypeVar("F", bound=Callable[..., Any])

IMAGE_SHAPE: tuple[int, int, int] = (1, 8, 8)
NUM_CLASSES = 3
STAGES: tuple[str, ...] = ("pruning_data", "scores", "ticket")
SCHEDULE_DENSITIES: tuple[float, ...] = (1.0, 0.5, 0.2, 0.05, 0.01, 0.001)
METHOD_SPARSITIES: tuple[float, ...] = (0.5, 0.8)


class ConformanceError(AssertionError):
    """A plugin object breaks the contract; the message says what, where and what was expected."""


def _error(subject: str, problem: str, expected: str, hint: str = "") -> ConformanceError:
    message = f"{subject}: {problem}; expected {expected}"
    return ConformanceError(f"{message}. {hint}" if hint else message)


def _fail(subject: str, problem: str, expected: str, hint: str = "") -> NoReturn:
    raise _error(subject, problem, expected, hint)


# ---------------------------------------------------------------------------- tiny models
def tiny_convnet(
    seed: int = 0, dtype: torch.dtype = torch.float32, num_classes: int = NUM_CLASSES
) -> nn.Module:
    """conv1(1→4) · bn1 · relu · conv2(4→6, no bias) · bn2 · relu · pool · fc(6→classes).

    BatchNorm running statistics start away from their defaults, so eval mode uses them.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 4, 3, padding=1),
                bn1=nn.BatchNorm2d(4),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(4, 6, 3, padding=1, bias=False),
                bn2=nn.BatchNorm2d(6),
                relu2=nn.ReLU(),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(6, num_classes),
            )
        )
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name.endswith("running_mean"):
                    buffer.uniform_(-0.1, 0.1)
                elif name.endswith("running_var"):
                    buffer.uniform_(0.8, 1.2)
    return model.to(dtype)


def tiny_mlp(
    seed: int = 0, dtype: torch.dtype = torch.float32, num_classes: int = NUM_CLASSES
) -> nn.Module:
    """flatten · fc1(64→16) · relu · fc2(16→12) · relu · fc3(12→classes)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(math.prod(IMAGE_SHAPE), 16),
                relu1=nn.ReLU(),
                fc2=nn.Linear(16, 12),
                relu2=nn.ReLU(),
                fc3=nn.Linear(12, num_classes),
            )
        )
    return model.to(dtype)


def tiny_data(seed: int = 0, per_class: int = 16) -> DataBundle:
    """3 classes of 8×8 grey images (a mean pattern per class plus noise), ``per_class`` train
    images and 4 test images per class, uint8 like every prunekit dataset."""
    g = make_generator(seed, "prunekit.testing.data")
    patterns = 127.5 + 60.0 * torch.randn((NUM_CLASSES, *IMAGE_SHAPE), generator=g)

    def split(n: int) -> ArrayData:
        y = (torch.arange(n * NUM_CLASSES) % NUM_CLASSES)[
            torch.randperm(n * NUM_CLASSES, generator=g)
        ]
        x = patterns[y] + 30.0 * torch.randn((len(y), *IMAGE_SHAPE), generator=g)
        return ArrayData(x=x.clamp(0, 255).round().to(torch.uint8), y=y)

    train = split(per_class)
    mean, std = channel_stats(train.x)
    return DataBundle(
        name="prunekit_testing",
        train=train,
        test=split(4),
        num_classes=NUM_CLASSES,
        mean=mean,
        std=std,
    )


def _single_threaded(fn: F) -> F:
    """Run a check with one intra-op thread: the kit's models are tiny, and thread start-up and
    contention would cost far more than they save (then restore the caller's setting)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return cast(F, wrapper)


def _devices() -> list[torch.device]:
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


# ------------------------------------------------------------------------ name -> object
_INTERFACES: dict[str, type] = {
    "scorer": Scorer,
    "ratio_schedule": RatioSchedule,
    "sanity_check": SanityCheck,
    "trainer": Trainer,
}
_LABEL = {"scorer": "scorer", "ratio_schedule": "schedule", "sanity_check": "check", "trainer": "trainer"}


def _resolve(kind: str, name_or_cls: Any, options: Mapping[str, Any]) -> tuple[str, Any]:
    """(subject for messages, instance) of a registered name, a class or an instance."""
    label = _LABEL[kind]
    interface = _INTERFACES[kind]
    registered: str | None = None
    if isinstance(name_or_cls, str):
        registered = name_or_cls
        try:
            obj = get_plugins().registry(kind).get(name_or_cls)
        except PrunekitError as err:
            raise ConformanceError(
                f"{label} {name_or_cls!r} is not registered: {err}. Is the plugin installed "
                "(pip install -e .) and loaded? `prunekit plugins` shows every plugin and its "
                "problems"
            ) from None
    else:
        obj = name_or_cls
    cls = obj if isinstance(obj, type) else type(obj)
    shown = registered or getattr(cls, "name", None) or cls.__name__
    subject = f"{label} {shown!r}"
    if not issubclass(cls, interface):
        _fail(
            subject,
            f"{cls.__module__}.{cls.__qualname__} is not a {interface.__name__}",
            f"a subclass of prunekit.interfaces.{interface.__name__}",
        )
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        _fail(
            subject, f"its name is {name!r}", "a class variable `name: ClassVar[str]`, snake_case"
        )
    if registered is not None and name != registered:
        _fail(
            subject,
            f"it is registered as {registered!r} but its class says name = {name!r}",
            "the same name in both places (results and reports use the class's name)",
        )
    description = getattr(obj, "description", None)
    if not isinstance(description, str) or not description.strip():
        _fail(
            subject,
            f"its description is {description!r}",
            "a one-line `description: ClassVar[str]`",
        )
    if not isinstance(obj, type):
        if options:
            _fail(
                subject,
                "options were given with an instance",
                "a registered name or a class when passing options",
            )
        return subject, obj
    try:
        cls()
    except Exception as err:
        raise _error(
            subject,
            f"it cannot be built without options ({type(err).__name__}: {err})",
            "every option to have a default, so the name alone works on the command line",
            "Make options keyword-only attrs fields with defaults.",
        ) from err
    try:
        return subject, cls(**options)
    except Exception as err:
        raise _error(
            subject,
            f"it cannot be built with options {dict(options)} ({type(err).__name__}: {err})",
            "options that are fields of the class",
        ) from err


def _call(subject: str, where: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ConformanceError:
        raise
    except Exception as err:
        hint = (
            " Scoring batches are float32 whatever the model's dtype: cast them "
            "(x.to(weight.dtype))."
            if "float64" in where
            else ""
        )
        raise ConformanceError(
            f"{subject} {where}: {getattr(fn, '__name__', 'it')}() raised "
            f"{type(err).__name__}: {err}; expected it to work on any model with Conv/Linear "
            f"layers (see the traceback above).{hint}"
        ) from err


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN equals NaN, -0.0 differs from 0.0), also dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
    if a.is_floating_point() or a.is_complex():
        return torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    return torch.equal(a, b)


def _names(layers: Sequence[PrunableLayer]) -> str:
    return ", ".join(layer.name for layer in layers)


# ---------------------------------------------------------------------------------- scorers
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
        _Case("conv net", torch.float32, True, True, d) for d in _devices() if d.type != "cpu"
    ]
    return cases


def _half_masks(model: nn.Module, layers: Sequence[PrunableLayer], seed: int) -> Masks:
    g = make_generator(seed, "prunekit.testing.masks")
    out = {}
    for layer in layers:
        keep = torch.zeros(layer.numel, dtype=torch.bool)
        keep[torch.randperm(layer.numel, generator=g)[: layer.numel // 2]] = True
        out[layer.name] = keep.view(layer.shape)
    device = next(model.parameters()).device
    return Masks(out).to(device)


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
            _fail(
                f"{subject} {where}",
                f"score() replaced the parameter object(s) {', '.join(replaced)}",
                "the model's parameters left as they were",
                "Work on a copy if you must change the model.",
            )
        current = dict([*model.named_parameters(), *model.named_buffers()])
        for name, before in self.state.items():
            now = current.get(name)
            if now is None or not _same(before, now):
                what = "weight" if name in params else "buffer (e.g. BatchNorm running statistics)"
                change = "" if now is None else f" (max change {_max_change(before, now):.3g})"
                _fail(
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
            _fail(
                f"{subject} {where}",
                f"score() left module(s) {', '.join(flipped)} in "
                f"{'train' if modes.get(flipped[0]) else 'eval'} mode",
                "every module's train/eval flag restored",
                "Save `m.training` of every module and restore it in a finally block.",
            )
        changed = [n for n, flag in self.requires_grad.items() if params[n].requires_grad != flag]
        if changed:
            _fail(
                f"{subject} {where}",
                f"score() changed requires_grad of {', '.join(changed)}",
                "requires_grad restored",
                "Use torch.autograd.grad on the weights and restore the flags in a finally block.",
            )
        with_grad = [n for n, p in params.items() if p.grad is not None]
        if with_grad:
            _fail(
                f"{subject} {where}",
                f"score() left gradients in .grad of {', '.join(with_grad)}",
                "no .grad left on the model",
                "Use torch.autograd.grad(loss, weights) instead of loss.backward().",
            )
        for name, before in self.masks.items():
            if name not in masks or not _same(before, masks[name]):
                _fail(
                    f"{subject} {where}",
                    f"score() changed the mask of layer {name}",
                    "ctx.masks untouched (the pipeline owns the masks)",
                )
        if not torch.equal(self.rng, torch.get_rng_state()):
            _fail(
                f"{subject} {where}",
                "score() drew from torch's global random number generator (its state changed)",
                "randomness drawn only from ctx.generator(...)",
                "Use ctx.generator('my_scorer', layer.name) so the seed fixes the scores and "
                "other code is not disturbed.",
            )


def _max_change(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape or a.numel() == 0:
        return float("nan")
    return float((a.detach().cpu().double() - b.detach().cpu().double()).abs().max())


def _validate_scores(
    subject: str, where: str, scores: Any, layers: Sequence[PrunableLayer], model: nn.Module
) -> dict[str, torch.Tensor]:
    at = f"{subject} {where}"
    if not isinstance(scores, Mapping):
        _fail(
            at, f"score() returned a {type(scores).__name__}", "a dict {layer name: score tensor}"
        )
    names = [layer.name for layer in layers]
    missing = [n for n in names if n not in scores]
    if missing:
        _fail(
            at,
            f"score() returned no scores for layer(s) {', '.join(missing)}",
            "one tensor per prunable layer, keyed by layer.name for layer in ctx.layers "
            f"({', '.join(names)})",
        )
    extra = [str(n) for n in scores if n not in names]
    if extra:
        _fail(
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
            _fail(here, f"the scores are a {type(s).__name__}", "a torch.Tensor")
        if tuple(s.shape) != layer.shape:
            _fail(
                here,
                f"the scores have shape {tuple(s.shape)}",
                f"shape {layer.shape}, the shape of the layer's weight (one score per weight)",
            )
        if not s.is_floating_point():
            _fail(here, f"the scores have dtype {s.dtype}", "a floating-point tensor")
        if s.device != device:
            _fail(
                here,
                f"the scores are on {s.device}, the model is on {device}",
                "scores on the model's device (ctx.device)",
                "Create tensors with device=ctx.device or .to(ctx.device).",
            )
        finite = torch.isfinite(s)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            _fail(
                here,
                f"{bad} of {s.numel()} scores are not finite (nan or inf)",
                "finite scores",
                "Score in float64, clamp, or guard divisions by zero.",
            )
        if s.requires_grad:
            _fail(
                here,
                "the scores still require grad (they hold the autograd graph)",
                "detached tensors",
                "Return s.detach().",
            )
        if s.numel() and s.untyped_storage().data_ptr() in storages:
            _fail(
                here,
                "the scores share memory with the parameter "
                f"{storages[s.untyped_storage().data_ptr()]}",
                "a new tensor (masking the model later would change the scores)",
                "Return .clone() of it.",
            )
    return {layer.name: scores[layer.name] for layer in layers}


def _differs(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return any(not _same(a[n], b[n]) for n in a)


def _first_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> str:
    for n in a:
        if not _same(a[n], b[n]):
            return f"layer {n!r} (max difference {_max_change(a[n], b[n]):.3g})"
    return "no layer"


def _constant(scores: Mapping[str, torch.Tensor]) -> bool:
    return all(bool((s == s.flatten()[0]).all()) for s in scores.values() if s.numel())


@_single_threaded
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
    subject, scorer = _resolve("scorer", name_or_cls, options)
    needs_data = getattr(scorer, "needs_data", None)
    if not isinstance(needs_data, bool):
        _fail(subject, f"needs_data is {needs_data!r}", "a bool class variable")
    data = tiny_data()
    for i, case in enumerate(_scorer_cases()):
        model = case.build()
        layers = tuple(prunable_layers(model))
        masks = (
            _half_masks(model, layers, 0)
            if case.half_masks
            else Masks.ones(model, [la.name for la in layers])
        )
        masks.apply(model)
        ctx = _scoring_context(subject, case, scorer, model, layers, masks, data, seed=0)
        before = _Snapshot.take(model, masks)
        first = _call(subject, str(case), scorer.score, model, ctx)
        before.compare(subject, str(case), model, masks)
        first = _validate_scores(subject, str(case), first, layers, model)
        again = _validate_scores(
            subject, str(case), _call(subject, str(case), scorer.score, model, ctx), layers, model
        )
        if _differs(first, again):
            _fail(
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
    request = _call(subject, str(case), scorer.data_request, model, data)
    if request is not None and not (
        isinstance(getattr(request, "samples_per_class", None), int)
        and request.samples_per_class > 0
        and isinstance(getattr(request, "iterations", None), int)
        and request.iterations > 0
    ):
        _fail(
            f"{subject} {case}",
            f"data_request() returned {request!r}",
            "None or a prunekit.interfaces.DataRequest with positive samples_per_class and "
            "iterations",
        )
    if scorer.needs_data and request is None:
        _fail(
            f"{subject} {case}",
            "needs_data is True but data_request() returned None (no batches)",
            "a DataRequest",
            "Set needs_data = False for a data-free scorer.",
        )
    if isinstance(request, DataRequest) and request.samples_per_class > 16:
        data = tiny_data(per_class=request.samples_per_class)
    batches = pipeline.scoring_batches(data, request, seed, case.device)
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
        _call(subject, where, scorer.score, model, attrs.evolve(ctx, seed=1)),
        layers,
        model,
    )
    other_model = case.build(seed=1)
    masks.apply(other_model)
    on_other = _validate_scores(
        subject, where, _call(subject, where, scorer.score, other_model, ctx), layers, other_model
    )
    uses_weights = _differs(scores, on_other)
    uses_data = False
    if ctx.batches:
        other_data = _scoring_context(
            subject, case, scorer, model, layers, masks, tiny_data(seed=1), seed=0
        )
        on_data = _validate_scores(
            subject, where, _call(subject, where, scorer.score, model, other_data), layers, model
        )
        uses_data = _differs(scores, on_data)
    if scorer.needs_data and not uses_data:
        _fail(
            f"{subject} {where}",
            "needs_data is True but the scores did not change when the scoring data changed",
            "scores computed from ctx.batches",
            "Set needs_data = False if the scorer is data-free (data sanity checks then skip it).",
        )
    if (
        not uses_weights
        and not uses_data
        and not _constant(scores)
        and not _differs(scores, other_seed)
    ):
        _fail(
            f"{subject} {where}",
            "its scores depend on neither the weights nor the data, so they are random, but "
            "seeds 0 and 1 gave identical scores",
            "a different random draw for every seed (ctx.seed)",
            "Draw them from ctx.generator('my_scorer', layer.name), which is seeded from ctx.seed.",
        )


# -------------------------------------------------------------------------------- schedules
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


def _random_scores(
    layers: Sequence[PrunableLayer], seed: int, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    g = make_generator(seed, "prunekit.testing.scores")
    return {layer.name: torch.randn(layer.shape, generator=g, dtype=dtype) for layer in layers}


@_single_threaded
def check_schedule(name_or_cls: str | type[RatioSchedule] | RatioSchedule, **options: Any) -> None:
    """Check a ratio schedule against the contract of :class:`~prunekit.interfaces.RatioSchedule`.

    On three layer stacks and densities 1.0 down to 0.001: one integer keep count per layer in
    ``0..numel``; in total within one weight per layer of ``round(density · total)``; every layer
    dense at density 1.0; the same counts from two calls; the scores left untouched; scores with
    ``-inf`` at pruned positions (later rounds of iterative methods) handled; scores that are
    mostly exactly 0 (ties at the threshold) kept within the budget too.
    """
    subject, schedule = _resolve("ratio_schedule", name_or_cls, options)
    for label, layers in _layer_sets():
        for j, density in enumerate(SCHEDULE_DENSITIES):
            scores = _random_scores(layers, j, torch.float64 if j % 2 else torch.float32)
            _check_allocation(
                subject,
                schedule,
                f"on {label} ({_names(layers)}) at density {density}",
                layers,
                density,
                scores,
            )
        masked = {
            n: s.masked_fill(
                torch.rand(s.shape, generator=make_generator(1, n)) < 0.5, float("-inf")
            )
            for n, s in _random_scores(layers, 99).items()
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
        tied = {n: (s > 1.0).to(s.dtype) for n, s in _random_scores(layers, 7).items()}
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
    counts = _call(subject, where, schedule.allocate, layers, density, scores)
    at = f"{subject} {where}"
    if not isinstance(counts, Mapping):
        _fail(
            at, f"allocate() returned a {type(counts).__name__}", "a dict {layer name: keep count}"
        )
    names = [layer.name for layer in layers]
    missing = [n for n in names if n not in counts]
    extra = [str(n) for n in counts if n not in names]
    if missing or extra:
        _fail(
            at,
            f"allocate() returned counts for {sorted(map(str, counts))}",
            f"one count per layer, keyed by layer.name ({', '.join(names)})",
        )
    got: dict[str, int] = {}
    for layer in layers:
        c = counts[layer.name]
        count = _as_int(c)
        if count is None:
            _fail(
                f"{subject} on layer {layer.name!r} of {where.removeprefix('on ')}",
                f"the keep count is {c!r} ({type(c).__name__})",
                "an int (a number of weights)",
            )
        got[layer.name] = count
        if not 0 <= count <= layer.numel:
            _fail(
                f"{subject} on layer {layer.name!r} of {where.removeprefix('on ')}",
                f"the keep count is {got[layer.name]}",
                f"a count in 0..{layer.numel} (the layer's weights)",
            )
    if density == 1.0:
        short = [layer.name for layer in layers if got[layer.name] != layer.numel]
        if short:
            _fail(
                at,
                f"layer(s) {', '.join(short)} are not dense",
                "every layer kept whole at density 1.0",
            )
    total = sum(layer.numel for layer in layers)
    target = round(density * total)
    kept = sum(got.values())
    if abs(kept - target) > len(layers):
        _fail(
            at,
            f"the counts keep {kept} of {total} weights (density {kept / total:.4g})",
            f"round({density} × {total}) = {target} within one weight per layer (±{len(layers)})",
        )
    for n, s in scores.items():
        if not _same(s, saved[n]):
            _fail(
                at,
                f"allocate() changed the scores of layer {n} in place",
                "the scores untouched (selection uses them after allocate)",
            )
    again = _call(subject, where, schedule.allocate, layers, density, scores)
    if not isinstance(again, Mapping) or any(_as_int(again.get(n)) != got[n] for n in names):
        _fail(
            at,
            "two calls gave different counts",
            "the same counts for the same layers, density and scores",
        )


# ----------------------------------------------------------------------------------- checks
def _sample_methods() -> list[Method]:
    out = []
    for family in FAMILIES:
        for scorer in (None,) if family == "dense" else ("magnitude", "random", None):
            out.append(
                Method(
                    name=f"kit_{family}_{scorer}",
                    description="the kit's sample method",
                    family=family,
                    scorer=scorer,
                )
            )
    return out


@_single_threaded
def check_sanity_check(name_or_cls: str | type[SanityCheck] | SanityCheck, **options: Any) -> None:
    """Check a sanity check against the contract of :class:`~prunekit.interfaces.SanityCheck`.

    ``stage`` / ``stages()`` name real stages and ``applies_to`` real families;
    ``not_applicable`` returns None or a str. At every declared stage the check must change
    something (only the ``none`` check may do nothing), give the same result for the same
    generator seed, and: ``pruning_data`` — return new uint8 images and labels in range without
    changing its input; ``scores`` — return one tensor per layer, shaped like the input, that
    selects other weights, without changing its input; ``ticket`` — return boolean
    :class:`~prunekit.masks.Masks` of the layers' shapes without changing the given masks.
    """
    subject, check = _resolve("sanity_check", name_or_cls, options)
    stage = getattr(check, "stage", None)
    if stage not in STAGES:
        _fail(subject, f"its stage is {stage!r}", f"one of {', '.join(STAGES)}")
    stages = _call(subject, "asked for its stages", check.stages)
    if not stages or not set(stages) <= set(STAGES):
        _fail(
            subject,
            f"stages() returned {set(stages or ())!r}",
            f"a non-empty subset of {set(STAGES)}",
        )
    applies = check.applies_to
    if not set(applies) <= set(FAMILIES):
        _fail(
            subject,
            f"applies_to names unknown families {sorted(set(applies) - set(FAMILIES))}",
            f"families among {', '.join(FAMILIES)}",
        )
    for method in _sample_methods():
        for uses_data in (True, False):
            reason = _call(
                subject,
                f"for the kit's {method.family} sample method",
                check.not_applicable,
                method,
                uses_data,
            )
            if reason is not None and not (isinstance(reason, str) and reason.strip()):
                _fail(
                    subject,
                    f"not_applicable({method.family} method, uses_data={uses_data}) "
                    f"returned {reason!r}",
                    "None (the check applies) or a non-empty str saying why it does not",
                )
    is_none = check.name == "none"
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
            _fail(
                subject,
                f"it declares stage {st!r} but {hook}() changed nothing on the kit's tiny inputs",
                "a perturbation at every declared stage (only the 'none' check may be a no-op)",
                f"Implement {hook}(), or declare the stage it acts on.",
            )
        if changed and is_none:
            _fail(
                subject,
                f"{hook}() changed its input",
                "the 'none' check to leave everything as it is",
            )


def _check_data_stage(subject: str, check: SanityCheck) -> bool:
    where = "at stage 'pruning_data' on the kit's 48 training images (3 classes, uint8 1×8×8)"
    at = f"{subject} {where}"

    def run() -> tuple[ArrayData, ArrayData]:
        data = tiny_data().train
        return data, _call(
            subject, where, check.perturb_data, data, NUM_CLASSES, make_generator(0, "kit-check")
        )

    clean = tiny_data().train
    data, out = run()
    if not isinstance(out, ArrayData):
        _fail(at, f"perturb_data() returned a {type(out).__name__}", "a prunekit.data.ArrayData")
    if not (_same(data.x, clean.x) and _same(data.y, clean.y)):
        _fail(
            at,
            "perturb_data() changed its input in place",
            "a new ArrayData, the input untouched (final training uses the clean data)",
        )
    if out.x.dtype != torch.uint8 or tuple(out.x.shape[1:]) != IMAGE_SHAPE:
        _fail(
            at,
            f"perturb_data() returned images {out.x.dtype} {tuple(out.x.shape)}",
            f"uint8 images (N, {', '.join(map(str, IMAGE_SHAPE))}) like the input",
        )
    if len(out) == 0:
        _fail(at, "perturb_data() returned no samples", "at least one sample")
    if out.y.dtype != torch.int64 or not bool(((out.y >= 0) & (out.y < NUM_CLASSES)).all()):
        _fail(
            at,
            f"perturb_data() returned labels {out.y.dtype} in "
            f"{out.y.min().item()}..{out.y.max().item()}",
            f"int64 labels in 0..{NUM_CLASSES - 1}",
        )
    _, again = run()
    if not (_same(out.x, again.x) and _same(out.y, again.y)):
        _fail(
            at,
            "two calls with generators of the same seed gave different data",
            "the same perturbation for the same generator",
            "Draw everything from the generator argument.",
        )
    return not (out.x.shape == clean.x.shape and _same(out.x, clean.x) and _same(out.y, clean.y))


def _check_scores_stage(subject: str, check: SanityCheck) -> bool:
    layers = tuple(prunable_layers(tiny_convnet()))
    where = f"at stage 'scores' on the kit's conv net ({_names(layers)})"
    at = f"{subject} {where}"
    clean = _random_scores(layers, 0)

    def run() -> tuple[dict[str, torch.Tensor], Any]:
        scores = {n: s.clone() for n, s in clean.items()}
        return scores, _call(
            subject, where, check.perturb_scores, scores, make_generator(0, "kit-check")
        )

    given, out = run()
    if not isinstance(out, Mapping) or set(out) != set(clean):
        _fail(
            at,
            f"perturb_scores() returned {type(out).__name__} with keys "
            f"{sorted(map(str, out)) if isinstance(out, Mapping) else '-'}",
            f"a dict with the same layer names ({_names(layers)})",
        )
    for layer in layers:
        s = out[layer.name]
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != layer.shape:
            _fail(
                f"{subject} on layer {layer.name!r} {where}",
                f"perturb_scores() returned {type(s).__name__} {tuple(getattr(s, 'shape', ()))}",
                f"a tensor of shape {layer.shape}",
            )
        if bool(torch.isnan(s).any()):
            _fail(
                f"{subject} on layer {layer.name!r} {where}",
                "perturb_scores() returned nan scores",
                "scores without nan",
            )
    if _differs(given, clean):
        _fail(at, "perturb_scores() changed its input in place", "new tensors, the input untouched")
    _, again = run()
    if _differs(dict(out), dict(again)):
        _fail(
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
    masks = _half_masks(model, layers, 0)
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
    where = f"at stage 'ticket' on the kit's conv net ({_names(layers)}, half of every layer kept)"
    at = f"{subject} {where}"
    ticket, masks_before, state_before = _ticket(0)
    out = _call(subject, where, check.perturb_ticket, ticket)
    if not isinstance(out, Masks):
        _fail(
            at,
            f"perturb_ticket() returned a {type(out).__name__}",
            "a prunekit.masks.Masks (e.g. Masks({name: bool tensor}))",
        )
    if list(out) != [la.name for la in layers]:
        _fail(
            at,
            f"perturb_ticket() returned masks for {list(out)}",
            f"masks for exactly the layers ({_names(layers)})",
        )
    for layer in layers:
        m = out[layer.name]
        if m.dtype != torch.bool or tuple(m.shape) != layer.shape:
            _fail(
                f"{subject} on layer {layer.name!r} {where}",
                f"the returned mask is {m.dtype} {tuple(m.shape)}",
                f"torch.bool of shape {layer.shape}",
            )
    for name, before in masks_before.items():
        if not _same(before, ticket.masks[name]):
            _fail(
                f"{subject} on layer {name!r} {where}",
                "perturb_ticket() changed the mask tensor it was given in place",
                "new mask tensors in the returned Masks, the given ones untouched",
            )
    state = {n: t.detach().clone() for n, t in ticket.model.state_dict().items()}
    again_ticket, _, _ = _ticket(0)
    again = _call(subject, where, check.perturb_ticket, again_ticket)
    if not out.equals(again) or any(
        not _same(state[n], t) for n, t in again_ticket.model.state_dict().items()
    ):
        _fail(
            at,
            "two calls on the same ticket with generators of the same seed gave different tickets",
            "the same masks and weights for the same generator",
            "Draw everything from ticket.generator.",
        )
    return not out.equals(masks_before) or any(not _same(state_before[n], state[n]) for n in state)


# ---------------------------------------------------------------------------------- methods
@_single_threaded
def check_method(name: str | Method) -> None:
    """Check a method recipe: it names a registered scorer and schedule whose options build,
    and :func:`prunekit.pipeline.prune` on the kit's conv net (sparsities 0.5 and 0.8; dense
    pre-training of one epoch with the ``sgd`` trainer when the method pre-trains) gives
    boolean masks for every prunable layer at the target density (within one weight per layer,
    or more where a global threshold keeps ties), zero weights at pruned positions, and the
    same masks again for the same seed.
    """
    if isinstance(name, str):
        subject = f"method {name!r}"
        try:
            method = get_plugins().registry("method").get(name)
        except PrunekitError as err:
            raise ConformanceError(
                f"{subject} is not registered: {err}; see `prunekit plugins`"
            ) from None
        if not isinstance(method, Method):
            _fail(
                subject,
                f"the registered object is a {type(method).__name__}",
                "a prunekit.interfaces.Method instance",
            )
        if method.name != name:
            _fail(
                subject,
                f"it is registered as {name!r} but its name field is {method.name!r}",
                "the same name",
            )
    else:
        method, subject = name, f"method {getattr(name, 'name', name)!r}"
        if not isinstance(method, Method):
            _fail(
                subject, f"it is a {type(method).__name__}", "a prunekit.interfaces.Method instance"
            )
    if not method.description.strip():
        _fail(subject, "its description is empty", "a one-line description")
    if method.scorer is not None:
        for kind, part, options in (
            ("scorer", method.scorer, method.scorer_options),
            ("ratio_schedule", method.schedule, method.schedule_options),
        ):
            try:
                pipeline.instantiate(kind, part, dict(options))
            except PrunekitError as err:
                _fail(
                    subject,
                    f"its {kind.replace('_', ' ')} cannot be built: {err}",
                    f"a registered {kind.replace('_', ' ')} and options it accepts",
                )
    data = tiny_data()
    for sparsity in METHOD_SPARSITIES:
        where = f"pruned to sparsity {sparsity} on the kit's conv net"
        runs = [_prune(subject, where, method, data, sparsity) for _ in range(2)]
        (model, outcome), (_, again) = runs
        masks = outcome.masks
        layers = outcome.layers
        if list(masks) != [la.name for la in layers]:
            _fail(
                f"{subject} {where}",
                f"the masks name {list(masks)}",
                f"one mask per prunable layer ({_names(layers)})",
            )
        total = sum(la.numel for la in layers)
        target = total if method.scorer is None else round((1 - sparsity) * total)
        kept = masks.kept()
        if abs(kept - target) > len(layers):
            _fail(
                f"{subject} {where}",
                f"the masks keep {kept} of {total} weights",
                f"{target} within one weight per layer (±{len(layers)})",
            )
        params = dict(model.named_parameters())
        for la in layers:
            if bool((params[la.name].detach()[~masks[la.name]] != 0).any()):
                _fail(
                    f"{subject} on layer {la.name!r} {where}",
                    "pruned positions hold non-zero weights",
                    "the model returned with its pruned weights zero",
                )
        if not masks.equals(again.masks):
            _fail(
                f"{subject} {where}",
                "two runs with seed 0 gave different masks",
                "the same masks for the same seed",
                "Check that its scorer passes check_scorer().",
            )


def _prune(
    subject: str, where: str, method: Method, data: DataBundle, sparsity: float
) -> tuple[nn.Module, pipeline.PruneOutcome]:
    """Prune a fresh kit conv net (seed 0) with ``method``; errors become ConformanceError."""
    model = tiny_convnet()
    training = None
    if method.pretrain:
        try:
            trainer = pipeline.instantiate("trainer", "sgd")
        except PrunekitError as err:
            raise ConformanceError(
                f"{subject} pre-trains, but the kit's trainer 'sgd' is missing: {err}"
            ) from None
        training = pipeline.Training(
            trainer=trainer,
            config=TrainConfig(epochs=1, batch_size=16, lr=0.05, lr_schedule="constant"),
            model_name="prunekit.testing.tiny_convnet",
            dataset_key="prunekit.testing.tiny_data",
            cache=DenseCache(),
        )
    try:
        outcome = pipeline.prune(
            model,
            data,
            method,
            sparsity,
            seed=0,
            allow_collapse=True,
            init_model=lambda s: tiny_convnet(seed=s),
            training=training,
        )
    except Exception as err:
        raise ConformanceError(
            f"{subject} {where}: prune() raised {type(err).__name__}: {err}; "
            "expected the recipe to prune "
            "any model with Conv/Linear layers (see the traceback above)"
        ) from err
    return model, outcome


# ---------------------------------------------------------------------------------- trainers
TRAINER_CONFIG = TrainConfig(
    epochs=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, lr_schedule="constant"
)
TRAINER_SNAPSHOTS: tuple[int, ...] = (0, 1, 4)


class _StepWatch:
    """Watches every optimizer step on the model's parameters through torch's global step
    hooks: just before step k+1 (and once more after training) the weights and every state
    tensor of a weight's shape must be exactly zero at pruned positions, i.e. as step k's
    enforcement left them. Also keeps the weights after the steps in ``capture``."""

    def __init__(self, model: nn.Module, masks: Masks, capture: Sequence[int]) -> None:
        named = dict(model.named_parameters())
        self.params = {n: named[n] for n in masks}
        self.masks = masks
        self.ids = {id(p) for p in named.values()}
        self.capture = set(capture)
        self.steps = 0
        self.optimizers: list[torch.optim.Optimizer] = []
        self.after: dict[int, dict[str, torch.Tensor]] = {}
        self.problems: list[str] = []
        self.state_keys: set[str] = set()  # keys of state tensors of a weight's shape seen
        self._handles: list[Any] = []

    def start(self) -> None:
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        self._handles = [
            register_optimizer_step_pre_hook(self._pre),
            register_optimizer_step_post_hook(self._post),
        ]

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _ours(self, optimizer: torch.optim.Optimizer) -> bool:
        return any(id(p) in self.ids for g in optimizer.param_groups for p in g["params"])

    def _pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self._ours(optimizer):
            return
        if not any(o is optimizer for o in self.optimizers):
            self.optimizers.append(optimizer)
        if self.steps:
            self.verify()

    def _post(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._ours(optimizer):
            self.steps += 1

    @torch.no_grad()
    def verify(self) -> None:
        """Check the state left by step ``self.steps``."""
        if self.steps in self.capture:
            self.after[self.steps] = {n: p.detach().cpu().clone() for n, p in self.params.items()}
        if len(self.problems) >= 5:
            return
        for name, p in self.params.items():
            pruned = ~self.masks[name].to(p.device)
            alive = int(torch.count_nonzero(p.detach()[pruned]))
            if alive:
                self.problems.append(
                    f"after step {self.steps}, {alive} pruned weights of {name} are not zero"
                )
            for optimizer in self.optimizers:
                for key, value in (optimizer.state.get(p) or {}).items():
                    if not (torch.is_tensor(value) and value.shape == p.shape):
                        continue
                    self.state_keys.add(str(key))
                    alive = int(torch.count_nonzero(value.detach()[pruned]))
                    if alive:
                        self.problems.append(
                            f"after step {self.steps}, the {type(optimizer).__name__} state "
                            f"{key!r} of {name} is nonzero at {alive} pruned positions (the next "
                            "step would revive those weights)"
                        )


def _config_text(config: TrainConfig) -> str:
    """The protocol's fields that differ from :class:`TrainConfig`'s defaults."""
    default = TrainConfig()
    changed = [
        f"{f.name}={getattr(config, f.name)!r}"
        for f in attrs.fields(TrainConfig)
        if getattr(config, f.name) != getattr(default, f.name)
    ]
    return ", ".join(changed) or "the default protocol"


def _survivor(model: nn.Module, masks: Masks, data: DataBundle, layer: str) -> int:
    """A kept position of ``layer`` that gets gradient; its weight is set to exactly 0."""
    params = dict(model.named_parameters())
    x = data.normalize(data.train.x[:16])
    was_training = model.training
    model.eval()
    nn.functional.cross_entropy(model(x), data.train.y[:16]).backward()
    model.train(was_training)
    grad = params[layer].grad
    assert grad is not None
    grad = grad.detach().abs().flatten() * masks[layer].flatten()
    position = int(grad.argmax())
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        params[layer].view(-1)[position] = 0.0
    return position


@_single_threaded
def check_trainer(
    name_or_cls: str | type[Trainer] | Trainer, config: TrainConfig | None = None, **options: Any
) -> dict[str, Any]:
    """Check a trainer: fit the kit's conv net with half of every layer pruned under ``config``
    (default :data:`TRAINER_CONFIG`: 2 epochs of 3 steps, SGD with momentum) and verify that

    * after every optimizer step, pruned weights and every optimizer state tensor of a
      weight's shape are exactly zero at pruned positions (seen through torch's global
      optimizer-step hooks, so it needs a ``torch.optim.Optimizer``);
    * a kept weight that starts at exactly 0 still trains (masks are not ``w != 0`` tests);
    * ``TrainResult`` has finite final and best accuracies in [0, 1], best >= final, and the
      final one is the trained model's test accuracy (fp32); ``steps`` counts the steps taken;
    * ``snapshot_steps`` are honoured: the state before training at 0 (a copy, untouched by
      training) and the weights right after step k at k.

    On the CPU, and on CUDA too when it is available. Returns what was watched on the last
    device: ``{"steps": n, "optimizers": [class names], "state": [state keys checked]}``.
    """
    subject, trainer = _resolve("trainer", name_or_cls, options)
    config = config if config is not None else TRAINER_CONFIG
    data = tiny_data()
    exact_steps = config.precision != "fp16"  # a gradient scaler may skip steps
    for device in _devices():
        where = f"on the kit's conv net ({device.type}; {_config_text(config)})"
        model = tiny_convnet()
        layers = prunable_layers(model)
        masks = _half_masks(model, layers, seed=1)
        masks.apply(model)
        layer = layers[1].name
        position = _survivor(model, masks, data, layer)
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        watch = _StepWatch(model, masks, TRAINER_SNAPSHOTS)
        fit = functools.partial(
            trainer.fit,
            masks=masks.to(device),
            seed=0,
            device=device,
            snapshot_steps=TRAINER_SNAPSHOTS,
        )
        watch.start()
        try:
            result = _call(subject, where, fit, model, data, config)
            if watch.steps:
                watch.verify()  # the state after the last step
        finally:
            watch.stop()
        if not watch.steps:
            _fail(
                subject,
                f"{where}: no optimizer step on the model's parameters was seen",
                "fit() to train the model it is given in place with a torch.optim.Optimizer",
            )
        if watch.problems:
            _fail(
                subject,
                f"{where}: " + "; ".join(watch.problems[:3])
                + (" (and more)" if len(watch.problems) > 3 else ""),
                "pruned positions exactly zero in the weights and in every optimizer state "
                "tensor after every step",
                "Call masks.enforcer(model, optimizer)() after each optimizer step.",
            )
        params = dict(model.named_parameters())
        if params[layer].detach().view(-1)[position].item() == 0.0:
            _fail(
                subject,
                f"{where}: the kept weight {layer}[{position}], set to exactly 0 before training "
                "and with a gradient, is still 0",
                "kept weights to train whatever their value",
                "Decide what is pruned from the masks, never from w != 0.",
            )
        _check_train_result(subject, where, trainer, model, data, config, result, watch, exact_steps)
        _check_snapshots(subject, where, result, initial, masks, watch, exact_steps)
    return {
        "steps": watch.steps,
        "optimizers": sorted({type(o).__name__ for o in watch.optimizers}),
        "state": sorted(watch.state_keys),
    }


def _check_train_result(
    subject: str,
    where: str,
    trainer: Trainer,
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    result: Any,
    watch: _StepWatch,
    exact_steps: bool,
) -> None:
    for label in ("final_accuracy", "best_accuracy"):
        value = getattr(result, label, None)
        if not isinstance(value, float) or not 0.0 <= value <= 1.0:
            _fail(subject, f"{where}: TrainResult.{label} is {value!r}", "a float in [0, 1]")
    if result.best_accuracy < result.final_accuracy:
        _fail(
            subject,
            f"{where}: best accuracy {result.best_accuracy} < final {result.final_accuracy}",
            "the best epoch's accuracy to be at least the final one",
        )
    if exact_steps and result.steps != watch.steps:
        _fail(
            subject,
            f"{where}: TrainResult.steps is {result.steps} but {watch.steps} optimizer steps ran",
            "steps to count optimizer steps (snapshots and rewinding points use them)",
        )
    if config.precision == "fp32":
        device = next(model.parameters()).device
        evaluate = functools.partial(trainer.evaluate, device=device)
        _, accuracy = _call(subject, where, evaluate, model, data)
        if abs(accuracy - result.final_accuracy) > 1e-9:
            _fail(
                subject,
                f"{where}: final_accuracy {result.final_accuracy} but the trained model "
                f"evaluates to {accuracy}",
                "the final accuracy of the model as fit() leaves it",
            )


def _check_snapshots(
    subject: str,
    where: str,
    result: Any,
    initial: Mapping[str, torch.Tensor],
    masks: Masks,
    watch: _StepWatch,
    exact_steps: bool,
) -> None:
    expected = "the state at every step listed in snapshot_steps (step 0 = before training)"
    for step in TRAINER_SNAPSHOTS:
        if step > result.steps:
            continue
        state = result.snapshots.get(step)
        if state is None:
            _fail(subject, f"{where}: no snapshot at step {step} (got {sorted(result.snapshots)})", expected)
        reference = initial if step == 0 else (watch.after.get(step) if exact_steps else None)
        for name in masks:
            if name not in state:
                _fail(subject, f"{where}: the snapshot at step {step} lacks {name}", "model.state_dict() keys")
            value = state[name].detach().cpu()
            if torch.count_nonzero(value[~masks[name].cpu()]):
                _fail(subject, f"{where}: the snapshot at step {step} has pruned weights of {name} not zero", expected)
            if reference is not None and not _same(value, reference[name].detach().cpu()):
                what = (
                    "differs from the weights before training (is it a copy, taken before the first step?)"
                    if step == 0
                    else "differs from the weights right after that step"
                )
                _fail(subject, f"{where}: the snapshot at step {step} of {name} {what}", expected)


# ----------------------------------------------------------------------------------- plugins
_CHECKS: dict[str, Callable[[str], Any]] = {
    "scorer": check_scorer,
    "ratio_schedule": check_schedule,
    "sanity_check": check_sanity_check,
    "method": check_method,
    "trainer": check_trainer,
}


@_single_threaded
def check_plugin(name: str) -> dict[str, list[str]]:
    """Check a loaded plugin: it loaded without problems, registered something, and every
    scorer, schedule, check and method it registered passes its check (default options).
    Returns what it registered, ``{kind: [names]}``."""
    loaded = get_plugins()
    info = next((p for p in loaded.info if p.name == name), None)
    subject = f"plugin {name!r}"
    if info is None:
        known = ", ".join(p.name for p in loaded.info if not p.builtin) or "none"
        _fail(
            subject,
            f"it is not loaded (third-party plugins loaded: {known})",
            "an entry point `[project.entry-points.prunekit] " + name + ' = "your_module"`',
            "Install your package (pip install -e .), and check "
            "PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD and PRUNEKIT_PLUGINS.",
        )
    if info.errors:
        _fail(
            subject,
            "it has problems: " + " | ".join(info.errors),
            "a plugin that loads cleanly (see `prunekit plugins`)",
        )
    if not info.registered:
        _fail(
            subject,
            f"it registered nothing (hooks: {', '.join(info.hooks) or 'none'})",
            "register_* hooks marked with @prunekit.hookimpl that call register(...)",
        )
    for kind, names in info.registered.items():
        for entry in names:
            if kind in _CHECKS:
                _CHECKS[kind](entry)
    return dict(info.registered)


# ------------------------------------------------------------------------------ pytest plugin
class Conformance:
    """What the ``prunekit_conformance`` fixture gives: the checks, and ``register`` to add a
    plugin object or module for the duration of one test (removed afterwards)."""

    check_scorer = staticmethod(check_scorer)
    check_schedule = staticmethod(check_schedule)
    check_sanity_check = staticmethod(check_sanity_check)
    check_method = staticmethod(check_method)
    check_trainer = staticmethod(check_trainer)
    check_plugin = staticmethod(check_plugin)
    ConformanceError = ConformanceError

    def __init__(self) -> None:
        self._registered: list[str] = []

    def register(self, plugin: object, name: str) -> None:
        register_plugin(plugin, name)
        self._registered.append(name)

    def close(self) -> None:
        for name in reversed(self._registered):
            unregister_plugin(name)
        self._registered.clear()


try:
    import pytest
except ImportError:  # the checks work without pytest
    pytest = None  # type: ignore[assignment]  # the module or None: the checks need no pytest

if pytest is not None:

    @pytest.fixture
    def prunekit_conformance() -> Iterator[Conformance]:
        """The conformance kit (``check_scorer``, ``check_schedule``, ``check_sanity_check``,
        ``check_method``, ``check_plugin``) and ``register(plugin, name)`` for this test."""
        kit = Conformance()
        try:
            yield kit
        finally:
            kit.close()
