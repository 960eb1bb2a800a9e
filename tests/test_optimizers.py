"""Masks stay exact under every optimizer and training option the built-in trainer offers.

Each case runs the conformance kit's trainer contract (watching every optimizer step: pruned
weights and every optimizer state tensor exactly zero at pruned positions, a kept weight that
starts at 0 still trains, snapshots and step counts) and then checks that the option really
acted. fp16 autocast and its gradient scaler run on the CPU (torch supports both there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import pytest
import torch
from torch import nn

from prunekit import testing
from prunekit.data import ArrayData, DataBundle
from prunekit.errors import PrunekitError
from prunekit.interfaces import TrainConfig
from prunekit.masks import Masks
from prunekit.pipeline import instantiate
from prunekit_plugins.optimizers import OPTIMIZERS, OptimizerFactory
from prunekit_plugins.sgd import SGDTrainer

BASE = testing.TRAINER_CONFIG

CASES: dict[str, tuple[dict[str, Any], str, list[str]]] = {
    # id: (protocol changes, optimizer class, state keys of a weight's shape)
    "sgd-momentum": ({}, "SGD", ["momentum_buffer"]),
    "nesterov": ({"nesterov": True}, "SGD", ["momentum_buffer"]),
    "adamw": ({"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.05}, "AdamW", ["exp_avg", "exp_avg_sq"]),
    "clipping": ({"grad_clip_norm": 0.05}, "SGD", ["momentum_buffer"]),
    "fp16-scaler": ({"precision": "fp16"}, "SGD", ["momentum_buffer"]),
    "bf16": ({"precision": "bf16"}, "SGD", ["momentum_buffer"]),
    "accumulation": ({"accumulation_steps": 4}, "SGD", ["momentum_buffer"]),
    "adamw-fp16-clip-accumulation": (
        {"optimizer": "adamw", "lr": 0.01, "precision": "fp16", "grad_clip_norm": 1.0, "accumulation_steps": 2},
        "AdamW",
        ["exp_avg", "exp_avg_sq"],
    ),
}


@pytest.mark.parametrize("changes, optimizer, state", list(CASES.values()), ids=list(CASES))
def test_masks_exact_after_every_step(changes: dict[str, Any], optimizer: str, state: list[str]) -> None:
    """0 nonzero pruned weights and 0 nonzero optimizer state at pruned positions after every
    step, and a zero-valued survivor trains; the optimizer and its state tensors were the ones
    the option asks for (so the state really was inspected)."""
    report = testing.check_trainer("sgd", config=attrs.evolve(BASE, **changes))
    assert report["optimizers"] == [optimizer]
    assert report["state"] == state
    if changes.get("precision") != "fp16":  # the scaler may skip a step whose gradients overflow
        assert report["steps"] == 6


@pytest.fixture(scope="module")
def data() -> DataBundle:
    return testing.tiny_data()


def _one_batch(data: DataBundle, n: int = 16) -> DataBundle:
    return attrs.evolve(data, train=ArrayData(x=data.train.x[:n], y=data.train.y[:n]))


def _delta(config: TrainConfig, data: DataBundle) -> float:
    """Norm of the change of all parameters after one SGD step (no momentum, no decay)."""
    model = testing.tiny_mlp()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    instantiate("trainer", "sgd").fit(model, data, config, seed=0)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_clipping_bounds_the_update(data: DataBundle) -> None:
    """With grad_clip_norm c one plain SGD step moves the weights by at most lr·c, and by more
    without clipping (so the bound is the clipping's doing)."""
    one = _one_batch(data)
    plain = TrainConfig(epochs=1, batch_size=16, lr=0.5, momentum=0.0, weight_decay=0.0, lr_schedule="constant")
    clip = 1e-3
    assert _delta(attrs.evolve(plain, grad_clip_norm=clip), one) <= 0.5 * clip * (1 + 1e-5)
    assert _delta(plain, one) > 10 * 0.5 * clip


def test_clipping_sees_only_kept_gradients(data: DataBundle) -> None:
    """The clipped norm is the norm of the kept weights' gradients: a masked model's first
    plain SGD step has norm exactly lr·c over the kept weights (pruned gradients do not eat
    into the budget)."""
    one = _one_batch(data)
    model = testing.tiny_mlp()
    g = torch.Generator().manual_seed(0)
    masks = Masks({n: torch.rand(p.shape, generator=g) < 0.3 for n, p in model.named_parameters() if n.endswith("weight")})
    masks.apply(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = TrainConfig(
        epochs=1, batch_size=16, lr=0.5, momentum=0.0, weight_decay=0.0, lr_schedule="constant", grad_clip_norm=1e-3
    )
    instantiate("trainer", "sgd").fit(model, one, config, masks=masks, seed=0)
    moved = torch.cat([(p.detach() - before[n]).flatten() for n, p in model.named_parameters()])
    assert float(moved.norm()) == pytest.approx(0.5 * 1e-3, rel=1e-4)


def _forward_dtypes(model: nn.Module) -> tuple[list[torch.dtype], list[torch.dtype]]:
    """(train-mode, eval-mode) output dtypes of the model's first Linear, recorded per call."""
    seen: tuple[list[torch.dtype], list[torch.dtype]] = ([], [])
    linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    linear.register_forward_hook(lambda m, i, out: seen[0 if m.training else 1].append(out.dtype))
    return seen


@pytest.mark.parametrize(
    "precision, dtype",
    [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)],
)
def test_precision_sets_the_forward_dtype(data: DataBundle, precision: str, dtype: torch.dtype) -> None:
    """Training and evaluation run the forward pass in the protocol's precision (fp32 by
    default: no autocast); the weights stay fp32."""
    model = testing.tiny_mlp()
    train, evaluate = _forward_dtypes(model)
    config = attrs.evolve(BASE, precision=precision)
    assert TrainConfig().precision == "fp32"
    instantiate("trainer", "sgd").fit(model, data, config, seed=0)
    assert train and set(train) == {dtype}
    assert evaluate and set(evaluate) == {dtype}
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_accumulation_sums_micro_batches_into_the_same_step(data: DataBundle) -> None:
    """accumulation_steps=4 runs 4 forward passes per step and, on a net without BatchNorm,
    ends at the weights of the unsplit batches (up to summation order), in as many steps."""
    trainer = instantiate("trainer", "sgd")
    split, whole = testing.tiny_mlp(), testing.tiny_mlp()
    calls, _ = _forward_dtypes(split)
    r_split = trainer.fit(split, data, attrs.evolve(BASE, accumulation_steps=4), seed=0)
    r_whole = trainer.fit(whole, data, BASE, seed=0)
    assert r_split.steps == r_whole.steps == 6
    assert len(calls) == 4 * 6
    for (name, a), b in zip(split.named_parameters(), whole.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


class _Momentum(torch.optim.Optimizer):
    """A plugin's optimizer: heavy-ball momentum under its own state key, replaced every step."""

    def __init__(self, params, lr: float) -> None:  # type: ignore[no-untyped-def]
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    velocity = 0.9 * self.state[p].get("velocity", torch.zeros_like(p)) + p.grad
                    self.state[p]["velocity"] = velocity
                    p.add_(velocity, alpha=-group["lr"])


@attrs.frozen(kw_only=True)
class _PluginTrainer(SGDTrainer):
    name: ClassVar[str] = "plugin_trainer"
    description: ClassVar[str] = "the sgd trainer with two more optimizers"
    optimizers: ClassVar[Mapping[str, OptimizerFactory]] = {
        **OPTIMIZERS,
        "rmsprop": lambda params, config, fused: torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum),
        "velocity": lambda params, config, fused: _Momentum(params, lr=config.lr),
    }


@pytest.mark.parametrize(
    "optimizer, cls, state",
    [("rmsprop", "RMSprop", ["momentum_buffer", "square_avg"]), ("velocity", "_Momentum", ["velocity"])],
)
def test_plugin_optimizer_masks_exact(optimizer: str, cls: str, state: list[str]) -> None:
    """An optimizer a plugin adds (by extending the trainer's table) is held to the same
    contract: its state, found by shape under whatever key, stays zero at pruned positions."""
    report = testing.check_trainer(_PluginTrainer, config=attrs.evolve(BASE, optimizer=optimizer, lr=0.01))
    assert report["optimizers"] == [cls]
    assert report["state"] == state


def test_unknown_optimizer_is_one_line_before_any_work(data: DataBundle) -> None:
    """An optimizer the trainer does not offer is refused before training, naming the ones it
    offers; the model is untouched."""
    model = testing.tiny_mlp()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(PrunekitError) as err:
        instantiate("trainer", "sgd").fit(model, data, attrs.evolve(BASE, optimizer="lion"), seed=0)
    assert str(err.value) == (
        "trainer 'sgd' has no optimizer 'lion'; it offers adamw, sgd (a plugin adds others with "
        "its own trainer)"
    )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_protocol_options_are_validated() -> None:
    """Out-of-range options are one-line ValueErrors naming the option."""
    for changes, fragment in [
        ({"accumulation_steps": 0}, "'accumulation_steps' must lie in 1..batch_size"),
        ({"accumulation_steps": 17}, "'accumulation_steps' must lie in 1..batch_size (16)"),
        ({"precision": "fp8"}, "'precision' must be one of fp32, bf16, fp16"),
        ({"betas": (0.9, 1.0)}, "'betas' must be two numbers in [0, 1)"),
        ({"grad_clip_norm": -1.0}, "'grad_clip_norm' must be >= 0"),
    ]:
        with pytest.raises(ValueError) as err:
            attrs.evolve(BASE, **changes)
        assert fragment in str(err.value) and "\n" not in str(err.value), changes
