"""Instruments: what a cell measures beyond its accuracy (a plugin kind).

An :class:`Instrument` measures something about one bench cell — the ticket before its final
training, the trained model, its history — and returns a :class:`Measurement`: named numbers
(``values``), curves and compact data for analyses across cells (``data``). The bench stores
the measurements of a cell in its row's ``instruments`` column (``{name: measurement}``), the
report draws their tables and plots (:mod:`prunekit.bench.instrument_report`) and the W&B sink
logs their numbers.

Suites choose instruments by name (``instruments = ["gradient_flow"]``) with options
(``[instrument_options.gradient_flow]``); an instrument's options are its attrs fields, and
they enter the identity of the cells it measures (an instrument may train extra copies of the
ticket, so a cell measured by it is another result). Instruments register through the
``register_instruments`` hook, as classes, like scorers and checks.

How a cell runs its instruments (:func:`start_instruments` at the end of
:func:`prunekit.cell.prepare_cell`, :func:`finish_instruments` in
:func:`prunekit.cell.finish_cell`, whatever the executor):

1. before the final training, ``before_training(ctx)`` sees the ticket (``ctx.model`` holds it)
   and returns whatever it wants back later;
2. the cell trains as it would without instruments (an instrument never changes the cell's
   own numbers: it works on copies and on its own seeded generators, and the global random
   state is restored around it);
3. after training, ``after_training(ctx, before)`` sees the trained model and the
   :class:`~prunekit.interfaces.TrainResult` and returns the measurement.

An instrument that raises records its error in its measurement (``{"error": ...}``); the cell
and the other instruments keep their results. The helpers below (copies of the ticket,
training them with the cell's trainer, the linear path between two weight vectors with
BatchNorm statistics recomputed, gradient norms, Jaccard overlaps) are the building blocks of
the built-in instruments (:mod:`prunekit_plugins.instruments`) and of third-party ones.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

from prunekit.data import DataBundle, make_generator
from prunekit.dense import rewind_step
from prunekit.errors import DivergedError, PrunekitError
from prunekit.interfaces import Method, TrainConfig, Trainer, TrainResult
from prunekit.masks import Masks
from prunekit.sentinels import CLEAN_CHECK

if TYPE_CHECKING:
    from prunekit.cell import CellSpec
    from prunekit.dense import DenseRun

Scalar = float | int | bool | str | None
Cells = Literal["clean", "all"]
State = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- measurements
def _finite(value: Any) -> Any:
    """A number as JSON can hold it (NaN and inf become None)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


@attrs.frozen(kw_only=True)
class Curve:
    """A curve of one cell: ``y`` over ``x`` (None where a point could not be measured)."""

    x: tuple[float, ...] = attrs.field(converter=lambda v: tuple(float(a) for a in v))
    y: tuple[float | None, ...] = attrs.field(converter=lambda v: tuple(_finite(a) for a in v))
    x_label: str
    y_label: str

    def __attrs_post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"a curve needs as many x as y values, got {len(self.x)} and {len(self.y)}")

    def as_dict(self) -> dict[str, Any]:
        return {"x": list(self.x), "y": list(self.y), "x_label": self.x_label, "y_label": self.y_label}


@attrs.frozen(kw_only=True)
class Measurement:
    """What an instrument measured on one cell.

    ``values``: named numbers (floats, ints, booleans, short strings; None = not measured) —
    the report's tables and W&B's summary; ``curves``: named :class:`Curve` s — the plots;
    ``data``: compact JSON data for analyses across cells (e.g. a packed mask), never shown as
    is; ``notes``: what a reader should know (e.g. a copy that diverged).
    """

    values: Mapping[str, Scalar] = attrs.field(factory=dict)
    curves: Mapping[str, Curve] = attrs.field(factory=dict)
    data: Mapping[str, Any] = attrs.field(factory=dict)
    notes: tuple[str, ...] = attrs.field(default=(), converter=lambda v: tuple(str(n) for n in v))

    def as_dict(self) -> dict[str, Any]:
        """JSON data as the results store keeps it."""
        return {
            "values": {str(k): _finite(v) for k, v in self.values.items()},
            "curves": {str(k): c.as_dict() for k, c in self.curves.items()},
            "data": dict(self.data),
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------ context
@attrs.frozen(kw_only=True, eq=False)
class InstrumentContext:
    """What an instrument sees of one cell.

    * ``model``: the cell's own model — the ticket (pruned weights zero, masks applied) in
      ``before_training``, the trained network in ``after_training``. Never change it: copy it
      (:func:`copy_model`) to work on it.
    * ``ticket``: the ticket's full state (``state_dict``) before the final training;
      ``unpruned``: the prunable weights the ticket was cut from before masking (θ₀ for initial
      tickets, θ_k or θ_T for rewound ones; empty for the dense network).
    * ``masks``, ``data``, ``trainer``, ``protocol``, ``seed``, ``device``, ``start_step``: as
      the cell trains (``start_step`` > 0 when the final training continues the schedule from
      a rewinding step).
    * ``result``: the cell's :class:`~prunekit.interfaces.TrainResult` (None before training).
    * ``build(seed)``: a fresh initialisation of the architecture, on ``device``.
    * ``dense(steps)``: the clean dense training of this model, protocol and seed (the one the
      lottery-ticket methods prune; computed once and cached beside the store), keeping θ at
      each of ``steps`` as well.
    """

    name: str
    spec: CellSpec
    method: Method
    model: nn.Module
    masks: Masks
    data: DataBundle
    trainer: Trainer
    protocol: TrainConfig
    seed: int
    device: torch.device
    start_step: int
    ticket: Mapping[str, torch.Tensor]
    unpruned: Mapping[str, torch.Tensor]
    build: Callable[[int], nn.Module]
    dense: Callable[[Sequence[int]], DenseRun]
    result: TrainResult | None = None

    def generator(self, *salt: object) -> torch.Generator:
        """A stream of this instrument on this cell (seeded from the run seed and the salt)."""
        return make_generator(self.seed, "instrument", self.name, *salt)

    def steps_per_epoch(self) -> int:
        return max(math.ceil(len(self.data.train) / self.protocol.batch_size), 1)


# --------------------------------------------------------------------------- the interface
class Instrument(abc.ABC):
    """A measurement of a cell (see the module docs). Subclasses are attrs classes whose fields
    are their options (keyword-only, with defaults), registered with ``register_instruments``.

    * ``cells``: which cells of a grid it measures: ``"clean"`` (the runs without a sanity
      check, the default) or ``"all"`` (check runs too);
    * :meth:`not_applicable`: why it cannot measure a method's cells (None when it can); the
      grid leaves it off those cells;
    * ``revision``: bump when the measurement changes without any option changing, so stored
      measurements of the old behaviour are not served as new.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    cells: ClassVar[Cells] = "clean"
    revision: ClassVar[int] = 0

    def not_applicable(self, method: Method) -> str | None:
        return None

    def before_training(self, ctx: InstrumentContext) -> Any:
        """Look at the ticket before the final training; the return value is handed back to
        :meth:`after_training`."""
        return None

    @abc.abstractmethod
    def after_training(self, ctx: InstrumentContext, before: Any) -> Measurement:
        """The measurement of the cell, after its final training."""


def instantiate_instrument(name: str, options: Mapping[str, Any] | None = None) -> Instrument:
    """The registered instrument ``name`` built with ``options`` (one-line errors)."""
    from prunekit.pipeline import instantiate

    return instantiate("instrument", name, options)


def applies(instrument: Instrument, method: Method, check: str) -> bool:
    """Whether ``instrument`` measures a cell of ``method`` under ``check``."""
    if check != CLEAN_CHECK and instrument.cells != "all":
        return False
    return instrument.not_applicable(method) is None


# ------------------------------------------------------------------------------ helpers
def state_of(model: nn.Module) -> State:
    """A detached copy of ``model``'s state."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def copy_model(model: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A copy of ``model`` (same device and layout), holding ``state`` when given."""
    out = copy.deepcopy(model)
    if state is not None:
        out.load_state_dict(dict(state))
    return out


def with_unpruned(ticket: Mapping[str, torch.Tensor], unpruned: Mapping[str, torch.Tensor]) -> State:
    """The ticket's state with its prunable weights replaced by the weights it was cut from
    (the same network without its mask)."""
    out = {k: v.detach().clone() for k, v in ticket.items()}
    for name, value in unpruned.items():
        out[name] = value.detach().to(device=out[name].device, dtype=out[name].dtype).clone()
    return out


def masked_state(state: Mapping[str, torch.Tensor], masks: Masks) -> State:
    """``state`` with the pruned positions of ``masks`` set to zero."""
    out = {k: v.detach().clone() for k, v in state.items()}
    for name, mask in masks.items():
        out[name] = torch.where(mask.to(out[name].device), out[name], torch.zeros_like(out[name]))
    return out


def train_copy(
    ctx: InstrumentContext,
    state: Mapping[str, torch.Tensor],
    *,
    seed: int,
    masks: Masks | None = None,
    config: TrainConfig | None = None,
    start_step: int | None = None,
) -> tuple[nn.Module, TrainResult | None, str | None]:
    """Train a copy of the cell's model from ``state`` with the cell's trainer.

    ``seed`` fixes the data order and augmentation (SGD noise); ``masks`` (default: the
    cell's) are enforced; ``config`` defaults to the cell's protocol and ``start_step`` to the
    cell's. Returns (model, result, None), or (model, None, why) when training diverged.
    """
    model = copy_model(ctx.model, state)
    step = ctx.start_step if start_step is None else start_step
    extra: dict[str, Any] = {"start_step": step} if step else {}  # trainers written before start_step
    try:
        result = ctx.trainer.fit(
            model, ctx.data, config or ctx.protocol, masks=masks if masks is not None else ctx.masks,
            seed=seed, device=ctx.device, **extra,
        )  # fmt: skip
    except DivergedError as err:
        return model, None, str(err)
    return model, result, None


def derived_seed(generator: torch.Generator) -> int:
    """A seed drawn from ``generator`` (for an extra copy's SGD noise or a fresh init)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def interpolate(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], alpha: float) -> State:
    """(1 − alpha)·a + alpha·b for floating tensors; others (BatchNorm's batch counters) from a."""
    out = {}
    for k, va in a.items():
        vb = b[k].to(va.device)
        out[k] = torch.lerp(va, vb.to(va.dtype), alpha) if va.is_floating_point() else va.clone()
    return out


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recompute_batchnorm(
    model: nn.Module,
    data: DataBundle,
    device: torch.device,
    *,
    samples: int,
    generator: torch.Generator,
    batch_size: int = 256,
) -> bool:
    """Replace every BatchNorm's running statistics by their average over ``samples`` training
    images (un-augmented, a seeded subset), as is standard when evaluating interpolated BN
    networks. Returns whether the model has any BatchNorm. Leaves the model in eval mode."""
    norms = _batchnorms(model)
    if not norms:
        model.eval()
        return False
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    train = data.train
    index = torch.randperm(len(train), generator=generator)[: max(1, samples)]
    model.train()
    try:
        for start in range(0, len(index), batch_size):
            idx = index[start : start + batch_size].to(train.x.device)
            model(data.normalize(train.x[idx].to(device)))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return True


def evaluate_error(ctx: InstrumentContext, model: nn.Module) -> float:
    """Test error (fraction) of ``model`` with the cell's trainer."""
    _loss, accuracy = ctx.trainer.evaluate(model, ctx.data, device=ctx.device)
    return 1.0 - float(accuracy)


def error_path(
    ctx: InstrumentContext,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    *,
    points: int,
    bn_samples: int,
) -> tuple[list[float], list[float]]:
    """Test error along the linear path from ``a`` to ``b`` at ``points`` evenly spaced α in
    [0, 1] (ends included), BatchNorm statistics recomputed at every point (the endpoints too,
    so they are measured as the path is) from the same training images, in the same batches,
    at every point of every path of the cell. Returns (alphas, errors)."""
    if points < 2:
        raise PrunekitError(f"a linear path needs at least 2 points, got {points}")
    model = copy_model(ctx.model)
    alphas = [i / (points - 1) for i in range(points)]
    errors = []
    for alpha in alphas:
        model.load_state_dict(interpolate(a, b, alpha))
        recompute_batchnorm(model, ctx.data, ctx.device, samples=bn_samples, generator=ctx.generator("bn"))
        errors.append(evaluate_error(ctx, model))
    return alphas, errors


def error_barrier(errors: Sequence[float]) -> float:
    """The error barrier of a path: its highest error minus the mean of its endpoints' errors
    (Frankle et al. 2020's instability; 0 for a path no worse than its ends)."""
    if len(errors) < 2:
        raise ValueError("a path has at least two points")
    return float(max(errors) - (errors[0] + errors[-1]) / 2.0)


def interpolation_barrier(alphas: Sequence[float], errors: Sequence[float]) -> float:
    """The highest error of a path above the straight line between its ends' errors,
    max over α of E(α) − ((1 − α)·E(0) + α·E(1)) (Entezari et al. 2022): 0 for a path that is
    never worse than the ends' interpolation, also when the ends' errors differ (where
    :func:`error_barrier` counts half their difference). Equal to :func:`error_barrier` when
    the ends' errors are equal."""
    if len(errors) < 2 or len(alphas) != len(errors):
        raise ValueError("a path has at least two points, one α per error")
    e0, e1 = errors[0], errors[-1]
    return float(max(e - ((1 - a) * e0 + a * e1) for a, e in zip(alphas, errors)))


def gradient_norm(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    masks: Masks | None = None,
) -> float:
    """L2 norm of the gradient of the mean cross-entropy over ``batches`` (normalised inputs,
    labels) with respect to every trainable parameter, pruned positions of ``masks`` excluded
    (they cannot move). Computed on a copy in training mode (batch statistics, as training
    sees them); ``model`` is not changed."""
    work = copy.deepcopy(model)
    work.train()
    work.zero_grad(set_to_none=True)
    total = sum(int(y.shape[0]) for _, y in batches)
    if total == 0:
        raise PrunekitError("gradient_norm needs at least one sample")
    for x, y in batches:
        logits = work(x)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision up, float64 kept
        loss = F.cross_entropy(logits, y, reduction="sum") / total
        loss.backward()
    return math.sqrt(_squared_norm(work.named_parameters(), masks))


def _squared_norm(named: Iterator[tuple[str, nn.Parameter]], masks: Masks | None) -> float:
    total = torch.zeros((), dtype=torch.float64)
    for name, p in named:
        if p.grad is None:
            continue
        g = p.grad.detach()
        if masks is not None and name in masks:
            g = g * masks[name].to(g.device)
        total += g.double().pow(2).sum().cpu()
    return float(total)


class _Stop(Exception):
    """Raised by the step hook to end a training run early (caught by :func:`step_gradient_norms`)."""


def step_gradient_norms(
    ctx: InstrumentContext,
    state: Mapping[str, torch.Tensor],
    *,
    steps: int,
    seed: int | None = None,
    masks: Masks | None = None,
) -> tuple[list[float], str | None]:
    """Train a copy from ``state`` with the cell's trainer and protocol for its first ``steps``
    optimizer steps and return the gradient norm the optimizer saw at each step (the
    minibatch gradient, pruned positions of ``masks`` — default the cell's — excluded), and a
    note when fewer steps were seen (the run diverged, or the trainer steps no torch optimizer).

    The norms are read in a hook that runs before every ``torch.optim`` step (gradients
    accumulated, unscaled and clipped as the trainer steps them) and ends the run after
    ``steps`` steps. With the same seed the copy follows the cell's own trajectory.
    """
    masks = ctx.masks if masks is None else masks
    model = copy_model(ctx.model, state)
    params = dict(model.named_parameters())
    first = next(iter(params.values()), None)
    norms: list[torch.Tensor] = []
    ours: dict[int, bool] = {}

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        mine = ours.get(id(optimizer))
        if mine is None:
            mine = ours[id(optimizer)] = any(p is first for g in optimizer.param_groups for p in g["params"])
        if not mine:
            return
        if len(norms) >= steps:
            raise _Stop
        total = torch.zeros((), device=ctx.device, dtype=torch.float64)
        for name, p in params.items():
            if p.grad is None:
                continue
            g = p.grad.detach()
            if name in masks:
                g = g * masks[name].to(g.device)
            total = total + g.double().pow(2).sum()
        norms.append(total.sqrt())

    note = None
    extra: dict[str, Any] = {"start_step": ctx.start_step} if ctx.start_step else {}
    handle = register_optimizer_step_pre_hook(hook)
    try:
        ctx.trainer.fit(
            model, ctx.data, ctx.protocol, masks=masks, seed=ctx.seed if seed is None else seed,
            device=ctx.device, **extra,
        )  # fmt: skip
    except _Stop:
        pass
    except DivergedError as err:
        note = f"the copy diverged after {len(norms)} steps: {err}"
    finally:
        handle.remove()
    values = [float(n) for n in norms]
    if note is None and len(values) < steps:
        note = (
            f"{len(values)} of {steps} steps seen (the protocol is shorter, or trainer "
            f"{ctx.trainer.name!r} steps no torch optimizer)"
        )
    return values, note


def probe_batches(
    ctx: InstrumentContext, samples: int, *, batch_size: int = 256, salt: object = "probe"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed seeded subset of ``samples`` training images (un-augmented, normalised, on the
    device) with their labels, in batches: the same for every method of a seed."""
    train = ctx.data.train
    index = torch.randperm(len(train), generator=make_generator(ctx.seed, "instrument-probe", salt))[:samples]
    out = []
    for start in range(0, len(index), batch_size):
        idx = index[start : start + batch_size].to(train.x.device)
        out.append((ctx.data.normalize(train.x[idx].to(ctx.device)), train.y[idx].to(ctx.device)))
    return out


def weight_distance(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], names: Sequence[str]) -> float:
    """L2 distance between ``a`` and ``b`` over the tensors ``names`` (e.g. the prunable weights)."""
    total = 0.0
    for name in names:
        total += float((a[name].detach().double().cpu() - b[name].detach().double().cpu()).pow(2).sum())
    return math.sqrt(total)


# ----------------------------------------------------------------------- mask overlap
def jaccard(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two boolean arrays of kept positions (1.0 when both are empty)."""
    x = np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a, dtype=bool).ravel()
    y = np.asarray(b.cpu() if isinstance(b, torch.Tensor) else b, dtype=bool).ravel()
    if x.shape != y.shape:
        raise ValueError(f"masks of {x.size} and {y.size} positions cannot be compared")
    union = int(np.count_nonzero(x | y))
    return 1.0 if union == 0 else int(np.count_nonzero(x & y)) / union


def flat_mask(masks: Masks) -> torch.Tensor:
    """Every mask in order, as one flat boolean tensor on the CPU."""
    return torch.cat([m.detach().cpu().reshape(-1) for m in masks.values()]) if len(masks) else torch.zeros(0, dtype=torch.bool)


def pack_bits(bits: torch.Tensor | np.ndarray) -> str:
    """A boolean vector as base64 text of its packed bits (8 positions a byte)."""
    array = np.asarray(bits.cpu() if isinstance(bits, torch.Tensor) else bits, dtype=bool).ravel()
    return base64.b64encode(np.packbits(array).tobytes()).decode("ascii")


def unpack_bits(text: str, count: int) -> np.ndarray:
    """The inverse of :func:`pack_bits` (``count`` positions)."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:count].astype(bool)


def pack_floats(values: torch.Tensor | np.ndarray) -> str:
    """A float vector as base64 text of its float32 bytes (little-endian)."""
    array = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, dtype="<f4").ravel()
    return base64.b64encode(array.tobytes()).decode("ascii")


def unpack_floats(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


# ------------------------------------------------------------------------- running them
@contextlib.contextmanager
def _own_random_state(device: torch.device) -> Iterator[None]:
    """Restore torch's global random state afterwards, so the cell's own numbers do not depend
    on which instruments ran."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def _error_text(err: BaseException) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


@attrs.define(kw_only=True, eq=False)
class InstrumentRun:
    """The instruments of one prepared cell, between its preparation and its finish."""

    context: InstrumentContext
    instruments: list[tuple[str, Instrument]]
    before: dict[str, Any] = attrs.field(factory=dict)
    errors: dict[str, str] = attrs.field(factory=dict)
    seconds: dict[str, float] = attrs.field(factory=dict)


def resolve_instruments(spec: CellSpec) -> list[tuple[str, Instrument]]:
    """The instruments of ``spec`` (name, instance with the cell's options), in name order."""
    from prunekit.identity import plain_options

    return [(name, instantiate_instrument(name, plain_options(options))) for name, options in spec.instruments]


def start_instruments(
    spec: CellSpec,
    *,
    method: Method,
    model: nn.Module,
    masks: Masks,
    data: DataBundle,
    trainer: Trainer,
    device: torch.device,
    start_step: int,
    unpruned: Mapping[str, torch.Tensor],
    build: Callable[[int], nn.Module],
    dense: Callable[[Sequence[int]], DenseRun],
) -> InstrumentRun:
    """Run every instrument's ``before_training`` on the prepared ticket."""
    instruments = resolve_instruments(spec)
    ctx = InstrumentContext(
        name="", spec=spec, method=method, model=model, masks=masks, data=data, trainer=trainer,
        protocol=spec.protocol, seed=spec.seed, device=device, start_step=start_step,
        ticket=state_of(model), unpruned={k: v.detach().clone() for k, v in unpruned.items()},
        build=build, dense=dense,
    )  # fmt: skip
    run = InstrumentRun(context=ctx, instruments=instruments)
    was_training = model.training
    for name, instrument in instruments:
        began = time.perf_counter()
        try:
            with _own_random_state(device):
                run.before[name] = instrument.before_training(attrs.evolve(ctx, name=name))
        except Exception as err:  # noqa: BLE001 - an instrument's failure is its own, not the cell's
            run.errors[name] = _error_text(err)
        run.seconds[name] = time.perf_counter() - began
    model.train(was_training)
    return run


def finish_instruments(run: InstrumentRun, model: nn.Module, result: TrainResult) -> dict[str, dict[str, Any]]:
    """Every instrument's measurement of the trained cell, as the store keeps it:
    ``{name: {"values", "curves", "data", "notes", "seconds"}}`` or ``{name: {"error", ...}}``."""
    ctx = attrs.evolve(run.context, model=model, result=result)
    out: dict[str, dict[str, Any]] = {}
    for name, instrument in run.instruments:
        began = time.perf_counter()
        if name in run.errors:
            out[name] = {"error": run.errors[name], "seconds": run.seconds.get(name, 0.0)}
            continue
        try:
            with _own_random_state(ctx.device):
                measured = instrument.after_training(attrs.evolve(ctx, name=name), run.before.get(name))
            entry = measured.as_dict()
        except Exception as err:  # noqa: BLE001 - an instrument's failure is its own, not the cell's
            entry = {"error": _error_text(err)}
        entry["seconds"] = run.seconds.get(name, 0.0) + time.perf_counter() - began
        out[name] = entry
    return out


def identity_options(spec: CellSpec) -> dict[str, Any]:
    """``{name: resolved options}`` of the cell's instruments, for its identity."""
    from prunekit.identity import canonical

    return {name: canonical(instrument) for name, instrument in resolve_instruments(spec)}


__all__ = [
    "Cells",
    "Curve",
    "Instrument",
    "InstrumentContext",
    "InstrumentRun",
    "Measurement",
    "applies",
    "copy_model",
    "derived_seed",
    "error_barrier",
    "error_path",
    "evaluate_error",
    "finish_instruments",
    "flat_mask",
    "gradient_norm",
    "instantiate_instrument",
    "interpolate",
    "interpolation_barrier",
    "jaccard",
    "masked_state",
    "pack_bits",
    "pack_floats",
    "probe_batches",
    "recompute_batchnorm",
    "resolve_instruments",
    "rewind_step",
    "start_instruments",
    "state_of",
    "step_gradient_norms",
    "train_copy",
    "unpack_bits",
    "unpack_floats",
    "weight_distance",
    "with_unpruned",
]
