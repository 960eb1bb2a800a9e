"""The trainer contract (:class:`~prunekit.interfaces.Trainer`): :func:`check_trainer`."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from prunekit.callbacks import CHECKPOINT_FORMAT, Checkpoint, Progress, Snapshots
from prunekit.data import DataBundle
from prunekit.interfaces import TrainConfig, Trainer, TrainResult
from prunekit.layers import prunable_layers
from prunekit.masks import Masks
from prunekit.testing.fixtures import (
    ConformanceError,
    call_plugin,
    fail,
    identical,
    kit_devices,
    random_half_masks,
    resolve,
    single_threaded,
    tiny_convnet,
    tiny_data,
)

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


@single_threaded
def check_trainer(
    name_or_cls: str | type[Trainer] | Trainer, config: TrainConfig | None = None, **options: Any
) -> dict[str, Any]:
    """Check a trainer: fit the kit's conv net with half of every layer pruned under ``config``
    (default :data:`TRAINER_CONFIG`: 2 epochs of 3 steps, SGD with momentum) and verify that

    * after every optimizer step, pruned weights and every optimizer state tensor of a
      weight's shape are exactly zero at pruned positions (seen through torch's global
      optimizer-step hooks, so it needs a ``torch.optim.Optimizer``);
    * a kept weight that starts at exactly 0 still trains (masks are not ``w != 0`` tests);
    * fit() returns a :class:`~prunekit.interfaces.TrainResult` with finite final and best
      accuracies in [0, 1], best >= final, a finite final loss, and the final accuracy is the
      trained model's test accuracy (fp32); ``steps`` counts the steps taken;
    * ``config.epochs`` is honoured: one optimizer step per batch of every epoch (the last
      short batch may be dropped or kept);
    * callbacks run: a :class:`~prunekit.callbacks.Snapshots` callback gets, in
      ``TrainResult.snapshots``, the state before training at 0 (a copy, untouched by
      training) and the weights right after step k at k; a
      :class:`~prunekit.callbacks.Progress` callback gets each epoch's record once, in order,
      as ``TrainResult.history`` holds them;
    * training is deterministic for a seed: a second fit of the same model, masks and data
      with seed 0 gives bit-for-bit the same weights and accuracy (on the CPU);
    * checkpoint and resume (on the CPU, for two epochs or more): a run with a
      :class:`~prunekit.callbacks.Checkpoint` stopped after epoch 1 (by a callback that
      raises) and fitted again with the same checkpoint takes only the remaining steps and
      ends with the uninterrupted run's weights, accuracies, history and snapshots; a
      checkpoint file whose unpickling would run code is never unpickled.

    On the CPU, and on CUDA too when it is available. Returns what was watched on the last
    device: ``{"steps": n, "optimizers": [class names], "state": [state keys checked]}``.
    """
    subject, trainer = resolve("trainer", name_or_cls, options)
    config = config if config is not None else TRAINER_CONFIG
    data = tiny_data()
    exact_steps = config.precision != "fp16"  # a gradient scaler may skip steps
    first: tuple[nn.Module, Any] | None = None  # the CPU run: model and result
    for device in kit_devices():
        where = f"on the kit's conv net ({device.type}; {_config_text(config)})"
        model, masks, layer, position = _masked_model(data)
        initial = {n: p.detach().clone() for n, p in model.named_parameters()}
        watch = _StepWatch(model, masks, TRAINER_SNAPSHOTS)
        records: list[dict[str, float]] = []
        fit = functools.partial(
            trainer.fit,
            masks=masks.to(device),
            seed=0,
            device=device,
            callbacks=[Snapshots(TRAINER_SNAPSHOTS), Progress(records.append)],
        )
        watch.start()
        try:
            result = call_plugin(subject, where, fit, model, data, config)
            if watch.steps:
                watch.verify()  # the state after the last step
        finally:
            watch.stop()
        if not watch.steps:
            fail(
                subject,
                f"{where}: no optimizer step on the model's parameters was seen",
                "fit() to train the model it is given in place with a torch.optim.Optimizer",
            )
        if watch.problems:
            fail(
                subject,
                f"{where}: " + "; ".join(watch.problems[:3])
                + (" (and more)" if len(watch.problems) > 3 else ""),
                "pruned positions exactly zero in the weights and in every optimizer state "
                "tensor after every step",
                "Call masks.enforcer(model, optimizer)() after each optimizer step.",
            )
        params = dict(model.named_parameters())
        if params[layer].detach().view(-1)[position].item() == 0.0:
            fail(
                subject,
                f"{where}: the kept weight {layer}[{position}], set to exactly 0 before training "
                "and with a gradient, is still 0",
                "kept weights to train whatever their value",
                "Decide what is pruned from the masks, never from w != 0.",
            )
        _check_train_result(subject, where, trainer, model, data, config, result, watch, exact_steps)
        _check_snapshots(subject, where, result, initial, masks, watch, exact_steps)
        _check_progress(subject, where, config, result, records)
        if first is None:
            first = (model, result)
    assert first is not None  # the CPU is always among the kit's devices
    _check_determinism(subject, trainer, config, data, *first)
    if config.epochs >= 2:
        _check_resume(subject, trainer, config, data, *first, exact_steps=exact_steps)
    _check_safe_resume(subject, trainer, config, data)
    return {
        "steps": watch.steps,
        "optimizers": sorted({type(o).__name__ for o in watch.optimizers}),
        "state": sorted(watch.state_keys),
    }


def _masked_model(data: DataBundle) -> tuple[nn.Module, Masks, str, int]:
    """The kit's conv net with half of every layer pruned, and one kept weight set to 0:
    (model, masks, that weight's layer, its position)."""
    model = tiny_convnet()
    layers = prunable_layers(model)
    masks = random_half_masks(model, layers, seed=1)
    masks.apply(model)
    layer = layers[1].name
    return model, masks, layer, _survivor(model, masks, data, layer)


def _check_determinism(
    subject: str,
    trainer: Trainer,
    config: TrainConfig,
    data: DataBundle,
    model: nn.Module,
    result: TrainResult,
) -> None:
    """A second CPU fit with the same seed gives the same weights and accuracy."""
    where = f"on the kit's conv net (cpu; {_config_text(config)})"
    again, masks, _, _ = _masked_model(data)
    fit = functools.partial(trainer.fit, masks=masks, seed=0, device=torch.device("cpu"))
    second = call_plugin(subject, where, fit, again, data, config)
    weights, other = dict(model.named_parameters()), dict(again.named_parameters())
    changed = [n for n in weights if not identical(weights[n].detach().cpu(), other[n].detach().cpu())]
    if changed or getattr(second, "final_accuracy", None) != result.final_accuracy:
        what = (
            f"different weights of {', '.join(changed[:3])}"
            if changed
            else f"final accuracy {second.final_accuracy} after {result.final_accuracy}"
        )
        fail(
            subject,
            f"{where}: two fits of the same model and masks with seed 0 gave {what}",
            "the same training for the same seed (the data order, augmentation and any "
            "randomness drawn from generators seeded by `seed`)",
            "Seed every generator from fit()'s seed (prunekit.data.make_generator); never "
            "draw from torch's global RNG unseeded.",
        )


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
    if not isinstance(result, TrainResult):
        fail(
            subject,
            f"{where}: fit() returned a {type(result).__name__}",
            "a prunekit.interfaces.TrainResult",
        )
    for label in ("final_accuracy", "best_accuracy"):
        value = getattr(result, label, None)
        if not isinstance(value, float) or not 0.0 <= value <= 1.0:
            fail(subject, f"{where}: TrainResult.{label} is {value!r}", "a float in [0, 1]")
    if result.best_accuracy < result.final_accuracy:
        fail(
            subject,
            f"{where}: best accuracy {result.best_accuracy} < final {result.final_accuracy}",
            "the best epoch's accuracy to be at least the final one",
        )
    if not isinstance(result.final_loss, float) or not math.isfinite(result.final_loss):
        fail(subject, f"{where}: TrainResult.final_loss is {result.final_loss!r}", "a finite float")
    n, batch = len(data.train), config.batch_size
    low, high = config.epochs * (n // batch), config.epochs * math.ceil(n / batch)
    if exact_steps and not low <= watch.steps <= high:
        fail(
            subject,
            f"{where}: {watch.steps} optimizer steps ran for {config.epochs} epochs of {n} "
            f"images in batches of {batch}",
            f"{low if low == high else f'{low}..{high}'} steps: one per batch, every epoch "
            "(config.epochs)",
        )
    if exact_steps and result.steps != watch.steps:
        fail(
            subject,
            f"{where}: TrainResult.steps is {result.steps} but {watch.steps} optimizer steps ran",
            "steps to count optimizer steps (snapshots and rewinding points use them)",
        )
    if config.precision == "fp32":
        device = next(model.parameters()).device
        evaluate = functools.partial(trainer.evaluate, device=device)
        _, accuracy = call_plugin(subject, where, evaluate, model, data)
        if abs(accuracy - result.final_accuracy) > 1e-9:
            fail(
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
    expected = (
        "TrainResult.snapshots to hold the state at every step a Snapshots callback lists "
        "(step 0 = before training)"
    )
    for step in TRAINER_SNAPSHOTS:
        if step > result.steps:
            continue
        state = result.snapshots.get(step)
        if state is None:
            fail(subject, f"{where}: no snapshot at step {step} (got {sorted(result.snapshots)})", expected)
        reference = initial if step == 0 else (watch.after.get(step) if exact_steps else None)
        for name in masks:
            if name not in state:
                fail(subject, f"{where}: the snapshot at step {step} lacks {name}", "model.state_dict() keys")
            value = state[name].detach().cpu()
            if torch.count_nonzero(value[~masks[name].cpu()]):
                fail(subject, f"{where}: the snapshot at step {step} has pruned weights of {name} not zero", expected)
            if reference is not None and not identical(value, reference[name].detach().cpu()):
                what = (
                    "differs from the weights before training (is it a copy, taken before the first step?)"
                    if step == 0
                    else "differs from the weights right after that step"
                )
                fail(subject, f"{where}: the snapshot at step {step} of {name} {what}", expected)


def _check_progress(
    subject: str, where: str, config: TrainConfig, result: TrainResult, records: list[dict[str, float]]
) -> None:
    """A Progress callback got each epoch's record once, as the history holds them."""
    if len(records) != config.epochs or records != list(result.history):
        fail(
            subject,
            f"{where}: a Progress callback got {len(records)} records for {config.epochs} epochs"
            + ("" if len(records) != config.epochs else " that differ from TrainResult.history"),
            "on_epoch_end once per epoch, in order, with the record TrainResult.history keeps",
            "Call every callback's on_epoch_end(run, record) after each epoch's evaluation.",
        )


class _Stop(Exception):
    """Raised by the kit's callback to interrupt a run after its first epoch."""


def _stop(record: dict[str, float]) -> None:
    raise _Stop


class _Steps:
    """Counts the optimizer steps taken on a model's parameters (torch's global step hook)."""

    def __init__(self, model: nn.Module) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        ids = {id(p) for p in model.parameters()}
        self.count = 0

        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            if any(id(p) in ids for g in optimizer.param_groups for p in g["params"]):
                self.count += 1

        self._handle = register_optimizer_step_post_hook(hook)

    def stop(self) -> None:
        self._handle.remove()


def _counted_fit(
    subject: str, where: str, trainer: Trainer, config: TrainConfig, data: DataBundle, callbacks: list[Any]
) -> tuple[nn.Module, Any, int, bool]:
    """(model, result or None, optimizer steps, whether _Stop interrupted it) of one CPU fit."""
    model, masks, _, _ = _masked_model(data)
    fit = functools.partial(
        trainer.fit, masks=masks, seed=0, device=torch.device("cpu"), callbacks=callbacks
    )
    steps = _Steps(model)
    try:
        return model, call_plugin(subject, where, fit, model, data, config), steps.count, False
    except ConformanceError as err:
        if isinstance(err.__cause__, _Stop):
            return model, None, steps.count, True
        raise
    finally:
        steps.stop()


def _check_resume(
    subject: str,
    trainer: Trainer,
    config: TrainConfig,
    data: DataBundle,
    model: nn.Module,
    result: TrainResult,
    *,
    exact_steps: bool,
) -> None:
    """A run stopped after epoch 1 and resumed from its checkpoint equals the run straight
    through (``model``, ``result``: the kit's first CPU run)."""
    where = f"on the kit's conv net (cpu; {_config_text(config)})"
    expected = "a run resumed from its Checkpoint to end as the same run straight through"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.ckpt"
        snapshots = Snapshots(TRAINER_SNAPSHOTS)
        _, _, first_steps, stopped = _counted_fit(
            subject, where, trainer, config, data, [snapshots, Checkpoint(path), Progress(_stop)]
        )
        if not stopped:
            fail(
                subject,
                f"{where}: a callback raised after epoch 1, but fit() went on",
                "an exception from a callback to stop fit()",
            )
        if not path.is_file():
            fail(
                subject,
                f"{where}: after epoch 1 no checkpoint was written to the Checkpoint callback's path",
                "the Checkpoint callback run after every epoch (on_epoch_end) with a "
                "TrainRun.resume_state",
            )
        records: list[dict[str, float]] = []
        resumed, again, steps, _ = _counted_fit(
            subject, where, trainer, config, data, [snapshots, Checkpoint(path), Progress(records.append)]
        )
    if exact_steps and first_steps + steps != result.steps:
        fail(
            subject,
            f"{where}: resumed after epoch 1 ({first_steps} steps), the run took {steps} more "
            f"steps; straight through it takes {result.steps}",
            "a run to resume from its checkpoint where it stopped",
            "Load Checkpoint.load(device) at the start of fit() and continue from its step.",
        )
    weights, other = dict(model.named_parameters()), dict(resumed.named_parameters())
    changed = [n for n in weights if not identical(weights[n].detach().cpu(), other[n].detach().cpu())]
    if changed:
        fail(subject, f"{where}: the resumed run ends with other weights of {', '.join(changed[:3])}", expected)
    for label in ("final_accuracy", "best_accuracy", "steps"):
        if getattr(again, label, None) != getattr(result, label):
            fail(
                subject,
                f"{where}: the resumed run's {label} is {getattr(again, label, None)!r}, straight "
                f"through {getattr(result, label)!r}",
                expected,
            )
    if len(again.history) != len(result.history) or records != list(again.history)[1:]:
        fail(
            subject,
            f"{where}: the resumed run's history has {len(again.history)} epochs (straight through "
            f"{len(result.history)}) and its Progress callback got {len(records)}",
            "the history of every epoch (those before the checkpoint from it) and on_epoch_end "
            "for the epochs run after resuming",
        )
    if sorted(again.snapshots) != sorted(result.snapshots) or not all(
        identical(again.snapshots[k][n].detach().cpu(), v.detach().cpu())
        for k, state in result.snapshots.items()
        for n, v in state.items()
    ):
        fail(
            subject,
            f"{where}: the resumed run's snapshots (steps {sorted(again.snapshots)}) differ from "
            f"the run straight through (steps {sorted(result.snapshots)})",
            "the snapshots taken before the checkpoint kept in it, and the later ones taken after resuming",
        )


class _Payload:
    """Unpickling this creates the folder ``marker``: a side effect the kit can see."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def _check_safe_resume(subject: str, trainer: Trainer, config: TrainConfig, data: DataBundle) -> None:
    """Resuming from a checkpoint file that holds a pickled object never unpickles it."""
    where = f"on the kit's conv net (cpu; {_config_text(config)})"
    with tempfile.TemporaryDirectory() as folder:
        path, marker = Path(folder) / "run.ckpt", Path(folder) / "payload-ran"
        torch.save({"format": CHECKPOINT_FORMAT, "model": _Payload(str(marker)), "epoch": 1}, path)
        model, masks, _, _ = _masked_model(data)
        # refusing the file (any error) is right; only whether the payload ran matters
        with contextlib.suppress(Exception):
            trainer.fit(model, data, config, masks=masks, seed=0, callbacks=[Checkpoint(path)])
        if marker.exists():
            fail(
                subject,
                f"{where}: resuming from a checkpoint file that holds a pickled object ran its code",
                "checkpoints read as tensors and plain data only",
                "Read them with Checkpoint.load(device) or torch.load(path, weights_only=True).",
            )
