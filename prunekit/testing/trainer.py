"""The trainer contract (:class:`~prunekit.interfaces.Trainer`): :func:`check_trainer`."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from prunekit.callbacks import Snapshots
from prunekit.data import DataBundle
from prunekit.interfaces import TrainConfig, Trainer, TrainResult
from prunekit.layers import prunable_layers
from prunekit.masks import Masks
from prunekit.testing.fixtures import (
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
    * a :class:`~prunekit.callbacks.Snapshots` callback gets, in ``TrainResult.snapshots``,
      the state before training at 0 (a copy, untouched by training) and the weights right
      after step k at k;
    * training is deterministic for a seed: a second fit of the same model, masks and data
      with seed 0 gives bit-for-bit the same weights and accuracy (on the CPU).

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
        fit = functools.partial(
            trainer.fit,
            masks=masks.to(device),
            seed=0,
            device=device,
            callbacks=[Snapshots(TRAINER_SNAPSHOTS)],
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
        if first is None:
            first = (model, result)
    assert first is not None  # the CPU is always among the kit's devices
    _check_determinism(subject, trainer, config, data, *first)
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
