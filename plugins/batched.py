"""Train several members at once: seeds of one cell, or a clean run beside its check runs.

:func:`fit_many` trains ``M`` models of the same architecture under the same protocol, each
with its own initial weights, masks, seed (data order and augmentation) and, optionally, its
own training split of the same length, as one stacked model: every optimizer step updates all
members together. Each member's numbers equal what :class:`~prunekit_plugins.sgd.SGDTrainer`
gives for it alone, up to the order of float summation (tests/test_batched.py):

* the data order and augmentation of member ``i`` come from ``make_generator(seeds[i],
  "train-order")``, drawn in the same sequence as the ``sgd`` trainer draws them;
* the loss is the sum of the members' mean cross-entropies, so each member's gradient is its
  own; the optimizer (the ``sgd`` trainer's table) must update each weight on its own
  (``ELEMENTWISE``: SGD, AdamW), so one optimizer over the stacked weights is the members'
  optimizers side by side;
* masks are enforced per member exactly as the ``sgd`` trainer does, by the same
  :class:`~prunekit.masks.MaskEnforcer` on the stacked weights: pruned weights and every
  optimizer state tensor of their shape zeroed after each step;
* BatchNorm keeps per-member statistics: batch statistics over each member's own batch, and
  per-member running mean, variance and batch count.

Two engines compute the stacked forward pass:

* ``wide`` turns the model into one wide model: a ``Conv2d`` becomes a grouped convolution
  with ``M`` times the groups, ``BatchNorm1d/2d`` one BatchNorm over ``M`` times the channels,
  ``Linear`` one batched matrix product; member ``i`` owns channel block ``i``. It applies when
  every module holding parameters or buffers is one of these and the forward pass keeps
  channel blocks apart, which is checked numerically on a random input before training (a
  model that pads, concatenates or reshapes channels fails the check).
* ``vmap`` maps the model's own forward over the members with ``torch.func.functional_call``
  and ``torch.func.vmap`` (BatchNorm buffers are mapped too); it takes any model.

``engine="auto"`` (default) uses ``wide`` where it applies, else ``vmap``.

Restrictions: fp32 only, no gradient clipping, no gradient accumulation, no checkpoints (train
such cells one at a time with the ``sgd`` trainer); all members' training splits have the same
length (so they take the same number of steps). Dropout draws differ from a member's solo run
(it is not seeded per cell in either trainer).
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs
import torch
from torch import nn
from torch.nn import functional as F

from prunekit import (
    ArrayData,
    Checkpoint,
    DataBundle,
    DivergedError,
    Masks,
    PrunekitError,
    TrainCallback,
    TrainConfig,
    TrainResult,
    TrainRun,
)
from prunekit.data import augment_batch, iterate_batches, make_generator
from prunekit_plugins.optimizers import ELEMENTWISE, OPTIMIZERS, OptimizerFactory
from prunekit_plugins.sgd import lr_factor

Engine = Literal["auto", "wide", "vmap"]

# TrainConfig fields this trainer follows; any other field must hold its default
_FOLLOWED = frozenset(
    {
        "epochs",
        "batch_size",
        "lr",
        "momentum",
        "nesterov",
        "weight_decay",
        "lr_schedule",
        "milestones",
        "gamma",
        "warmup_epochs",
        "optimizer",
        "betas",
    }
)


def check_config(
    config: TrainConfig, optimizers: Mapping[str, OptimizerFactory] = OPTIMIZERS
) -> None:
    """Raise a one-line :class:`PrunekitError` for a protocol the batched trainer cannot follow."""
    if config.optimizer not in optimizers:
        raise PrunekitError(
            f"the batched trainer has no optimizer {config.optimizer!r}; it offers "
            f"{', '.join(sorted(optimizers))}"
        )
    if optimizers[config.optimizer] not in ELEMENTWISE:
        raise PrunekitError(
            f"the batched trainer steps all members with one optimizer, which is only right for an "
            f"optimizer that updates each weight on its own; {config.optimizer!r} is not known to be "
            "one, so train these cells one at a time with the sgd trainer"
        )
    unsupported = [
        f"{f.name}={getattr(config, f.name)!r}"
        for f in attrs.fields(TrainConfig)
        if f.name not in _FOLLOWED and getattr(config, f.name) != f.default
    ]
    if unsupported:
        raise PrunekitError(
            f"the batched trainer trains fp32 without clipping or accumulation, but the protocol "
            f"sets {', '.join(unsupported)}; train these cells one at a time with the sgd trainer"
        )


# ------------------------------------------------------------------------------ engines
class _Stacked(nn.Module):
    """The stacked weights under their members' names, for :meth:`Masks.enforcer`."""

    def __init__(self, params: Mapping[str, nn.Parameter]) -> None:
        super().__init__()
        self._stacked = dict(params)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, nn.Parameter]]:  # type: ignore[override]
        return iter(self._stacked.items())


class _WideConv2d(nn.Module):
    def __init__(
        self, conv: nn.Conv2d, tensors: Mapping[str, torch.Tensor | None], members: int
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups = conv.groups * members
        self.t = dict(tensors)  # a plain dict: the stacked weights are not this module's own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.t["weight"], self.t.get("bias")
        assert weight is not None
        w = weight.reshape(-1, *weight.shape[2:])
        b = None if bias is None else bias.reshape(-1)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)  # type: ignore[arg-type]


class _WideBatchNorm(nn.Module):
    """nn.BatchNorm's forward over the members' channel blocks, per-member buffers."""

    def __init__(
        self, bn: nn.modules.batchnorm._BatchNorm, tensors: Mapping[str, torch.Tensor | None]
    ) -> None:
        super().__init__()
        self.momentum, self.eps, self.track_running_stats = (
            bn.momentum,
            bn.eps,
            bn.track_running_stats,
        )
        self.t = dict(tensors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.t
        factor = 0.0 if self.momentum is None else self.momentum
        tracked = t.get("num_batches_tracked")
        if self.training and self.track_running_stats and tracked is not None:
            tracked.add_(1)
            factor = 1.0 / float(tracked[0]) if self.momentum is None else self.momentum
        mean, var = t.get("running_mean"), t.get("running_var")
        use_batch = self.training or (mean is None and var is None)
        keep = not self.training or self.track_running_stats
        weight, bias = t.get("weight"), t.get("bias")
        return F.batch_norm(
            x,
            mean.view(-1) if keep and mean is not None else None,
            var.view(-1) if keep and var is not None else None,
            None if weight is None else weight.reshape(-1),
            None if bias is None else bias.reshape(-1),
            use_batch,
            factor,
            self.eps,
        )


class _WideLinear(nn.Module):
    def __init__(self, tensors: Mapping[str, torch.Tensor | None], members: int) -> None:
        super().__init__()
        self.t, self.members = dict(tensors), members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError("the wide engine's Linear takes (batch, features) inputs only")
        weight, bias = self.t["weight"], self.t.get("bias")
        assert weight is not None
        xm = x.reshape(x.shape[0], self.members, -1).transpose(0, 1)  # (M, B, in)
        w = weight.transpose(1, 2)  # (M, in, out)
        out = torch.bmm(xm, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), xm, w)
        return out.transpose(0, 1).reshape(x.shape[0], -1)


class _WideEngine:
    """One wide model whose channel block ``i`` is member ``i`` (see the module docs)."""

    name = "wide"

    def __init__(
        self,
        template: nn.Module,
        params: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        members: int,
    ) -> None:
        self.members = members
        self.model = copy.deepcopy(template)
        stacked = {**params, **buffers}
        for name, module in list(self.model.named_modules()):
            prefix = f"{name}." if name else ""
            tensors = {
                k: stacked.get(prefix + k)
                for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
            }
            if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
                wide: nn.Module = _WideConv2d(module, tensors, members)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                wide = _WideBatchNorm(module, tensors)
            elif isinstance(module, nn.Linear):
                wide = _WideLinear(tensors, members)
            else:
                continue
            if not name:
                raise ValueError("the model is a single layer")
            parent, _, leaf = name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, leaf, wide)
        left = [
            n for n, _ in itertools.chain(self.model.named_parameters(), self.model.named_buffers())
        ]
        if left:
            raise ValueError(f"modules it cannot widen hold {', '.join(left[:3])}")

    def train(self, mode: bool) -> None:
        self.model.train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, B, C, ...) -> logits (M, B, K)."""
        m, b = x.shape[:2]
        out = self.model(x.transpose(0, 1).reshape(b, m * x.shape[2], *x.shape[3:]))
        return out.reshape(b, m, -1).transpose(0, 1)


class _VmapEngine:
    """The model's own forward mapped over the members (torch.func)."""

    name = "vmap"

    def __init__(
        self,
        template: nn.Module,
        params: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        members: int,
    ) -> None:
        from torch.func import functional_call, vmap

        self.base = copy.deepcopy(template).to("meta")
        self.params, self.buffers = dict(params), dict(buffers)

        def one(
            p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor
        ) -> torch.Tensor:
            return functional_call(self.base, (p, b), (x,))

        self._mapped = vmap(one, in_dims=(0, 0, 0), randomness="different")

    def train(self, mode: bool) -> None:
        self.base.train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mapped(self.params, self.buffers, x)


def _wide_fits(
    engine: _WideEngine, models: Sequence[nn.Module], data: DataBundle, device: torch.device
) -> bool:
    """The wide model's eval-mode logits equal each member's own on a random input."""
    generator = torch.Generator().manual_seed(0)
    dtype = next((p.dtype for p in models[0].parameters() if p.is_floating_point()), torch.float32)
    x = torch.randn(len(models), 4, *data.input_shape, generator=generator).to(device, dtype)
    modes = [m.training for m in models]
    try:
        engine.train(False)
        with torch.no_grad():
            wide = engine.forward(x)
            for i, model in enumerate(models):
                model.eval()
                own = model(x[i])
                scale = max(float(own.abs().max()), 1.0)
                if (
                    wide.shape[1:] != (x.shape[1], *own.shape[1:])
                    or float((wide[i] - own).abs().max()) > 1e-4 * scale
                ):
                    return False
    except (RuntimeError, ValueError):
        return False
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
    return True


def _engine(
    kind: Engine,
    models: Sequence[nn.Module],
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    data: DataBundle,
    device: torch.device,
) -> _WideEngine | _VmapEngine:
    if kind in ("auto", "wide"):
        try:
            wide = _WideEngine(models[0], params, buffers, len(models))
        except ValueError as err:
            if kind == "wide":
                raise PrunekitError(
                    f"the wide engine cannot train {type(models[0]).__name__}: {err}; use engine='vmap'"
                ) from None
        else:
            if _wide_fits(wide, models, data, device):
                return wide
            if kind == "wide":
                raise PrunekitError(
                    f"the wide engine does not reproduce {type(models[0]).__name__}'s forward pass (it mixes "
                    "channels across members); use engine='vmap'"
                )
    return _VmapEngine(models[0], params, buffers, len(models))


# ------------------------------------------------------------------------------ training
def _same_architecture(models: Sequence[nn.Module]) -> None:
    def shapes(m: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
        return [
            (n, tuple(t.shape)) for n, t in itertools.chain(m.named_parameters(), m.named_buffers())
        ]

    first = shapes(models[0])
    for i, model in enumerate(models[1:], start=1):
        if type(model) is not type(models[0]) or shapes(model) != first:
            raise ValueError(
                f"member {i} is not the same architecture as member 0; batch only same-model cells"
            )


def _stacked_masks(
    masks: Sequence[Masks | None], params: Mapping[str, torch.Tensor]
) -> Masks | None:
    names: list[str] = []
    for m in masks:
        if m is not None:
            names += [n for n in m if n not in names]
    if not names:
        return None
    for i, m in enumerate(masks):
        if m is not None and set(m) != set(names):
            raise ValueError(f"member {i}'s masks cover other parameters than the others'")
    return Masks(
        {
            n: torch.stack(
                [
                    (
                        m[n].to(params[n].device)
                        if m is not None
                        else torch.ones(
                            params[n].shape[1:], dtype=torch.bool, device=params[n].device
                        )
                    )
                    for m in masks
                ]
            )
            for n in names
        }
    )


def _member_state(
    names: Sequence[str], tensors: Mapping[str, torch.Tensor], i: int
) -> dict[str, torch.Tensor]:
    return {n: tensors[n][i].detach().clone() for n in names}


def _diverged(step: int, steps_per_epoch: int, what: str) -> DivergedError:
    epoch = (step - 1) // steps_per_epoch + 1
    return DivergedError(
        f"training diverged at step {step} (epoch {epoch}): {what}; lower the learning rate, clip "
        "gradients (grad_clip_norm) or train in fp32",
        step=step,
        epoch=epoch,
    )


def fit_many(
    models: Sequence[nn.Module],
    data: DataBundle,
    config: TrainConfig,
    *,
    masks: Sequence[Masks | None] | None = None,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    train_data: Sequence[ArrayData | None] | None = None,
    callbacks: Sequence[Sequence[TrainCallback]] | None = None,
    start_step: int = 0,
    eval_batch_size: int = 1024,
    engine: Engine = "auto",
    optimizers: Mapping[str, OptimizerFactory] = OPTIMIZERS,
) -> list[TrainResult | DivergedError]:
    """Train ``models`` (same architecture) together; one result per member, in order.

    ``masks[i]``, ``seeds[i]``, ``train_data[i]`` and ``callbacks[i]`` are member ``i``'s
    masks (None: dense), seed (data order), training split (None: ``data.train``) and
    callbacks, as the ``sgd`` trainer's ``fit`` takes them (a member's callbacks see its own
    :class:`~prunekit.callbacks.TrainRun`; ``on_epoch_end`` stops for a member that diverged);
    ``start_step`` applies to every member. A :class:`~prunekit.callbacks.Checkpoint` is
    refused: the batched trainer does not resume. Each model ends holding its trained weights
    and buffers, as after ``SGDTrainer.fit``. A member whose loss or weights stop being finite
    gets a :class:`DivergedError` (step and epoch as the ``sgd`` trainer reports them) instead
    of a result; the others train on. ``wall_time`` of each result is its share (1/M) of the
    batch's time.
    """
    count = len(models)
    if count == 0:
        return []
    masks = list(masks) if masks is not None else [None] * count
    splits = list(train_data) if train_data is not None else [None] * count
    member_callbacks = [list(c) for c in callbacks] if callbacks is not None else [[] for _ in models]
    if not (len(seeds) == len(masks) == len(splits) == len(member_callbacks) == count):
        raise ValueError(f"{count} models need as many seeds, masks, training splits and callback lists")
    if any(Checkpoint.among(c) is not None for c in member_callbacks):
        raise PrunekitError(
            "the batched trainer writes no checkpoints (it does not resume); train cells that "
            "checkpoint one at a time with the sgd trainer"
        )
    check_config(config, optimizers)
    _same_architecture(models)
    device = torch.device(device)
    trains = [(split if split is not None else data.train).to(device) for split in splits]
    if len({len(t) for t in trains}) != 1:
        raise ValueError(
            "members' training splits differ in length; batch only splits of one length"
        )
    steps_per_epoch = max(math.ceil(len(trains[0]) / config.batch_size), 1)
    total_steps = steps_per_epoch * config.epochs
    if not 0 <= start_step <= total_steps:
        raise PrunekitError(
            f"start_step {start_step} lies outside 0..{total_steps} (the protocol's "
            f"{config.epochs} epochs of {steps_per_epoch} steps)"
        )

    for model in models:
        model.to(device)
    param_names = [n for n, _ in models[0].named_parameters()]
    buffer_names = [n for n, _ in models[0].named_buffers()]
    state_names = list(models[0].state_dict().keys())
    with torch.no_grad():
        params = {
            n: nn.Parameter(torch.stack([dict(m.named_parameters())[n].detach() for m in models]))
            for n in param_names
        }
        buffers = {
            n: torch.stack([dict(m.named_buffers())[n].detach() for m in models]).clone()
            for n in buffer_names
        }
    tensors = {**params, **buffers}
    runner = _engine(engine, models, params, buffers, data, device)
    optimizer = optimizers[config.optimizer](list(params.values()), config, device.type == "cuda")
    stacked_masks = _stacked_masks(masks, params)
    enforce = (
        stacked_masks.enforcer(_Stacked(params), optimizer) if stacked_masks is not None else None
    )
    if enforce is not None:
        enforce()

    generators = [make_generator(seed, "train-order") for seed in seeds]
    histories: list[list[dict[str, float]]] = [[] for _ in models]
    best = [0.0] * count
    errors: list[DivergedError | None] = [None] * count
    start_epoch, skip = divmod(start_step, steps_per_epoch)
    step = start_step
    runs = [
        TrainRun(
            step=step,
            epoch=start_epoch,
            state=functools.partial(_member_state, state_names, tensors, j),
        )
        for j in range(count)
    ]
    stepping = [j for j in range(count) if member_callbacks[j]]
    for j in stepping:
        for callback in member_callbacks[j]:
            callback.on_step(runs[j])

    started = time.perf_counter()
    runner.train(True)
    for epoch in range(start_epoch, config.epochs):
        loss_sum = torch.zeros(count, device=device)
        correct = torch.zeros(count, device=device, dtype=torch.int64)
        seen = 0
        iterators = [
            itertools.islice(iterate_batches(train, config.batch_size, g), skip, None)
            for train, g in zip(trains, generators)
        ]
        for i, batches in enumerate(zip(*iterators), start=skip):
            factor = lr_factor(config, epoch + i / steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * factor
            xs = [augment_batch(xb, data.augment, g) for (xb, _), g in zip(batches, generators)]
            y = torch.stack([yb for _, yb in batches])
            xb = torch.stack(xs)
            x = data.normalize(xb.reshape(-1, *xb.shape[2:])).reshape(*xb.shape[:2], *xb.shape[2:])
            optimizer.zero_grad(set_to_none=True)
            logits = runner.forward(x).float()
            losses = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none"
            )
            losses = losses.view(count, -1).mean(1)
            losses.sum().backward()
            # no gradient zeroing: without clipping and with an elementwise optimizer a pruned
            # gradient reaches no kept weight (the sgd trainer's rule, too)
            optimizer.step()
            if enforce is not None:
                enforce()
            step += 1
            seen += y.shape[1]
            detached = losses.detach()
            loss_sum += detached * y.shape[1]
            correct += (logits.detach().argmax(2) == y).sum(1)
            bad = ~torch.isfinite(detached)
            if bool(bad.any()):
                for j in torch.nonzero(bad).flatten().tolist():
                    if errors[j] is None:
                        errors[j] = _diverged(
                            step, steps_per_epoch, "the loss is not finite (NaN or inf)"
                        )
            for j in stepping:
                runs[j].step = step
                for callback in member_callbacks[j]:
                    callback.on_step(runs[j])
        skip = 0
        finite = torch.ones(count, dtype=torch.bool, device=device)
        for p in params.values():
            finite &= torch.isfinite(p.detach().reshape(count, -1)).all(1)
        for j in torch.nonzero(~finite).flatten().tolist():
            if errors[j] is None:
                errors[j] = _diverged(
                    step, steps_per_epoch, "the weights are not finite (NaN or inf)"
                )
        test = _evaluate(runner, data, count, device, eval_batch_size)
        runner.train(True)
        for j in range(count):
            if errors[j] is not None:
                continue
            test_loss, test_acc = test[j]
            best[j] = max(best[j], test_acc)
            record = {
                "epoch": epoch + 1,
                "step": step,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": float(loss_sum[j]) / max(seen, 1),
                "train_accuracy": float(correct[j]) / max(seen, 1),
                "test_loss": test_loss,
                "test_accuracy": test_acc,
            }
            histories[j].append(record)
            runs[j].step, runs[j].epoch = step, epoch + 1
            for callback in member_callbacks[j]:
                callback.on_epoch_end(runs[j], record)
    final = _evaluate(runner, data, count, device, eval_batch_size) if not any(histories) else None
    elapsed = time.perf_counter() - started

    with torch.no_grad():  # each model holds its trained weights, as after SGDTrainer.fit
        for j, model in enumerate(models):
            for n, p in model.named_parameters():
                p.copy_(params[n][j])
            for n, b in model.named_buffers():
                b.copy_(buffers[n][j])
    out: list[TrainResult | DivergedError] = []
    for j in range(count):
        error = errors[j]
        if error is not None:
            out.append(error)
            continue
        if histories[j]:
            final_loss, final_acc = histories[j][-1]["test_loss"], histories[j][-1]["test_accuracy"]
            best_acc = best[j]
        else:
            assert final is not None
            final_loss, final_acc = final[j]
            best_acc = final_acc
        out.append(
            TrainResult(
                final_accuracy=final_acc,
                best_accuracy=best_acc,
                final_loss=final_loss,
                history=tuple(histories[j]),
                steps=step,
                snapshots=runs[j].snapshots,
                wall_time=elapsed / count,
            )
        )
    return out


def _evaluate(
    runner: _WideEngine | _VmapEngine,
    data: DataBundle,
    count: int,
    device: torch.device,
    batch_size: int,
) -> list[tuple[float, float]]:
    """(loss, accuracy) of every member on ``data.test``, as ``SGDTrainer.evaluate`` computes it."""
    test = data.test.to(device)
    runner.train(False)
    loss_sum = torch.zeros(count, device=device, dtype=torch.float64)
    correct = torch.zeros(count, device=device, dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, len(test), batch_size):
            x = data.normalize(test.x[start : start + batch_size])
            y = test.y[start : start + batch_size]
            logits = runner.forward(x.unsqueeze(0).expand(count, *x.shape)).float()
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.repeat(count), reduction="none"
            )
            loss_sum += loss.view(count, -1).sum(1).double()
            correct += (logits.argmax(2) == y).sum(1)
    n = max(len(test), 1)
    return [(float(loss_sum[j]) / n, float(correct[j]) / n) for j in range(count)]


__all__ = ["check_config", "fit_many"]
