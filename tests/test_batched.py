"""The batched trainer: every member equals its solo run with the sgd trainer, masks hold in
every member, members are isolated (divergence, data), and unsupported protocols are refused."""

from __future__ import annotations

import copy

import attrs
import pytest
import torch
from torch import nn

from prunekit.callbacks import Snapshots
from prunekit.data import ArrayData, DataBundle
from prunekit.errors import DivergedError, PrunekitError
from prunekit.interfaces import TrainConfig
from prunekit.masks import Masks
from prunekit.pipeline import build_model, load_dataset
from prunekit_plugins.batched import fit_many
from prunekit_plugins.sgd import SGDTrainer

QUICK = TrainConfig(
    epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4, lr_schedule="cosine", milestones=()
)


class Float64Bundle(DataBundle):
    """The same data, normalised to float64, so summation-order noise (~1e-16) cannot grow
    into visible differences and the comparison with the solo run can be tight."""

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return super().normalize(x).double()


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset("digits", None)


def float64(data: DataBundle, train_size: int) -> DataBundle:
    fields = {f.name: getattr(data, f.name) for f in attrs.fields(DataBundle)}
    fields["train"] = ArrayData(x=data.train.x[:train_size], y=data.train.y[:train_size])
    return Float64Bundle(**fields)


def magnitude_masks(model: nn.Module, keep: float = 0.1) -> Masks:
    """Keep the largest ``keep`` of the weights of every conv and linear layer, globally."""
    weights = {n: p.detach() for n, p in model.named_parameters() if p.dim() > 1}
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    threshold = flat.kthvalue(int(len(flat) * (1 - keep))).values
    return Masks({n: w.abs() > threshold for n, w in weights.items()})


def states_close(a: nn.Module, b: nn.Module) -> float:
    """Largest relative difference (norm of difference / norm) over the state dicts."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    return relative_difference(sa, sb)


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest norm(a − b) / norm(b) over the tensors of two state dicts (integers as floats)."""
    return max(
        float((a[n].double() - b[n].double()).norm() / b[n].double().norm().clamp_min(1e-30))
        for n in b
    )


def assert_masks_hold(snapshots: dict[int, dict[str, torch.Tensor]], masks: Masks) -> None:
    for step, state in snapshots.items():
        for name, keep in masks.items():
            assert torch.count_nonzero(state[name][~keep]) == 0, (step, name)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["wide", "vmap"])
def test_members_equal_their_solo_runs(digits: DataBundle, engine: str) -> None:
    """Three members on digits_cnn (width 8) with the quick protocol (128 training images, float64): two
    seeds with their own magnitude masks, one with a label-permuted split and no masks. Each
    ends with the weights, BatchNorm buffers, per-epoch accuracies and snapshots of its solo
    sgd run to 1e-12, and pruned weights are zero after every step of every member."""
    data = float64(digits, 128)
    seeds = [0, 1, 2]
    models = [build_model("digits_cnn", digits, s, options={"width": 8}).double() for s in seeds]
    masks = [magnitude_masks(models[0]), magnitude_masks(models[1]), None]
    permuted = ArrayData(
        x=data.train.x,
        y=data.train.y[torch.randperm(128, generator=torch.Generator().manual_seed(5))],
    )
    splits = [None, None, permuted]
    steps = list(range(9))  # 2 steps an epoch, 4 epochs
    solo = [copy.deepcopy(m) for m in models]
    batched = fit_many(
        models,
        data,
        QUICK,
        masks=masks,
        seeds=seeds,
        train_data=splits,
        callbacks=[[Snapshots(steps)]] * 3,
        engine=engine,  # type: ignore[arg-type]
    )
    for i, (model, alone) in enumerate(zip(models, solo)):
        expected = SGDTrainer().fit(
            alone,
            data,
            QUICK,
            masks=masks[i],
            seed=seeds[i],
            train_data=splits[i],
            callbacks=[Snapshots(steps)],
        )
        result = batched[i]
        assert not isinstance(result, DivergedError)
        assert states_close(model, alone) < 1e-12
        assert [h["test_accuracy"] for h in result.history] == [
            h["test_accuracy"] for h in expected.history
        ]
        assert result.steps == expected.steps == 8
        assert sorted(result.snapshots) == steps
        for step in steps:
            for name, value in expected.snapshots[step].items():
                assert torch.allclose(
                    result.snapshots[step][name], value, rtol=1e-12, atol=1e-14
                ), (step, name)
        if masks[i] is not None:
            assert_masks_hold(result.snapshots, masks[i])  # type: ignore[arg-type]


@pytest.mark.slow
def test_quick_protocol_in_float32_matches_up_to_summation_order(digits: DataBundle) -> None:
    """The real quick protocol (4 epochs over the whole digits split, fp32): after one step the
    weights agree to 1e-5 (summation order only), and every epoch's test accuracy of the
    masked and the dense member lies within two test images of its solo run."""
    seeds = [0, 1]
    models = [build_model("digits_cnn", digits, s) for s in seeds]
    masks = [magnitude_masks(models[0]), None]
    solo = [copy.deepcopy(m) for m in models]
    batched = fit_many(models, digits, QUICK, masks=masks, seeds=seeds, callbacks=[[Snapshots([1, 92])]] * 2)
    image = 1.0 / len(digits.test)
    for i, alone in enumerate(solo):
        expected = SGDTrainer().fit(
            alone, digits, QUICK, masks=masks[i], seed=seeds[i], callbacks=[Snapshots([1])]
        )
        result = batched[i]
        assert not isinstance(result, DivergedError)
        first, reference = result.snapshots[1], expected.snapshots[1]
        assert relative_difference(first, reference) < 1e-5
        for ours, theirs in zip(result.history, expected.history, strict=True):
            assert abs(ours["test_accuracy"] - theirs["test_accuracy"]) <= 2 * image + 1e-12
    assert_masks_hold(batched[0].snapshots, masks[0])  # type: ignore[arg-type,union-attr]
    assert batched[0].final_accuracy > 0.5 and batched[1].final_accuracy > 0.9  # type: ignore[union-attr]


class ChannelMixer(nn.Module):
    """A model whose forward rolls channels: the wide engine's channel blocks would mix."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.roll(torch.relu(self.conv(x)), shifts=1, dims=1)
        return self.head(x.mean(dim=(2, 3)))


def test_auto_engine_falls_back_when_widening_would_mix_members(digits: DataBundle) -> None:
    """A model that mixes channels fails the wide engine's check (one-line error when asked
    for), and the automatic choice trains it with vmap, equal to the solo runs."""
    data = float64(digits, 64)
    config = attrs.evolve(QUICK, epochs=2)
    torch.manual_seed(0)
    models = [ChannelMixer().double() for _ in range(2)]
    with pytest.raises(PrunekitError, match="mixes channels"):
        fit_many([copy.deepcopy(m) for m in models], data, config, seeds=[0, 1], engine="wide")
    solo = [copy.deepcopy(m) for m in models]
    fit_many(models, data, config, seeds=[0, 1])
    for seed, (model, alone) in enumerate(zip(models, solo)):
        SGDTrainer().fit(alone, data, config, seed=seed)
        assert states_close(model, alone) < 1e-12


def test_a_diverging_member_fails_alone(digits: DataBundle) -> None:
    """One member with an infinite weight gets DivergedError at step 1 (epoch 1); the other
    trains on and equals its solo run."""
    data = float64(digits, 64)
    config = attrs.evolve(QUICK, epochs=1)
    models = [build_model("digits_mlp", digits, s).double() for s in (0, 1)]
    with torch.no_grad():
        models[1].fc1.weight[0, 0] = float("inf")
    solo = copy.deepcopy(models[0])
    results = fit_many(models, data, config, seeds=[0, 1])
    error = results[1]
    assert isinstance(error, DivergedError) and (error.step, error.epoch) == (1, 1)
    assert "diverged at step 1" in str(error)
    SGDTrainer().fit(solo, data, config, seed=0)
    assert not isinstance(results[0], DivergedError)
    assert states_close(models[0], solo) < 1e-12


def test_refuses_what_it_cannot_batch(digits: DataBundle) -> None:
    """fp16, clipping, accumulation or an optimizer not known to be elementwise: one line
    pointing to the sgd trainer; models of two
    architectures, splits of two lengths or mismatched argument lists: ValueError."""
    models = [build_model("digits_mlp", digits, s) for s in (0, 1)]
    for change in ({"precision": "fp16"}, {"grad_clip_norm": 1.0}, {"accumulation_steps": 2}):
        with pytest.raises(PrunekitError, match="one at a time with the sgd trainer"):
            fit_many(models, digits, attrs.evolve(QUICK, **change), seeds=[0, 1])
    with pytest.raises(PrunekitError, match="no optimizer 'lion'"):
        fit_many(models, digits, attrs.evolve(QUICK, optimizer="lion"), seeds=[0, 1])
    coupled = {"lars": lambda params, config, fused: torch.optim.SGD(params, lr=config.lr)}
    with pytest.raises(PrunekitError, match="updates each weight on its own"):
        fit_many(
            models, digits, attrs.evolve(QUICK, optimizer="lars"), seeds=[0, 1], optimizers=coupled
        )
    with pytest.raises(ValueError, match="same architecture"):
        fit_many([models[0], build_model("digits_cnn", digits, 0)], digits, QUICK, seeds=[0, 1])
    short = ArrayData(x=digits.train.x[:64], y=digits.train.y[:64])
    with pytest.raises(ValueError, match="differ in length"):
        fit_many(models, digits, QUICK, seeds=[0, 1], train_data=[None, short])
    with pytest.raises(ValueError, match="as many seeds"):
        fit_many(models, digits, QUICK, seeds=[0])
