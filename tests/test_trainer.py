"""The sgd trainer: accuracy, schedules, masks, snapshots, checkpoint and resume, divergence,
late rewinding (start_step) and the train command's protocol options."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from prunekit.callbacks import Checkpoint, Progress, Snapshots
from prunekit.data import ArrayData, Augment, DataBundle, augment_batch, make_generator
from prunekit.interfaces import TrainConfig
from prunekit.layers import prunable_layers
from prunekit.masks import Masks
from prunekit.pipeline import build_model, instantiate, load_dataset
from prunekit_plugins.sgd import lr_factor

FAST = TrainConfig(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-4, lr_schedule="cosine")


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset("digits")


def test_dense_digits_cnn_learns(digits: DataBundle) -> None:
    """digits_cnn with the digits protocol reaches >= 90% test accuracy (chance is 10%)."""
    from prunekit_plugins.datasets import Digits

    model = build_model("digits_cnn", digits, 0)
    result = instantiate("trainer", "sgd").fit(model, digits, Digits.default_protocol, seed=0)
    assert result.final_accuracy >= 0.90
    assert result.best_accuracy >= result.final_accuracy
    assert len(result.history) == Digits.default_protocol.epochs
    assert result.steps == Digits.default_protocol.epochs * math.ceil(len(digits.train) / 64)


def test_multistep_factor_matches_paper_protocol() -> None:
    """The CIFAR protocol: lr x0.1 at epoch 80 and x0.01 at 120 of 160."""
    config = TrainConfig()
    assert lr_factor(config, 79.9) == 1.0
    assert lr_factor(config, 80.0) == pytest.approx(0.1)
    assert lr_factor(config, 120.0) == pytest.approx(0.01)
    cosine = TrainConfig(epochs=10, lr_schedule="cosine", warmup_epochs=2)
    assert lr_factor(cosine, 1.0) == pytest.approx(0.5)
    assert lr_factor(cosine, 6.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_masked_training_keeps_mask_through_trainer(digits: DataBundle) -> None:
    """Through the trainer, pruned weights stay exactly zero after training."""
    model = build_model("digits_mlp", digits, 0)
    g = torch.Generator().manual_seed(0)
    masks = Masks({layer.name: torch.rand(layer.shape, generator=g) < 0.2 for layer in prunable_layers(model)})
    masks.apply(model)
    instantiate("trainer", "sgd").fit(model, digits, FAST, masks=masks, seed=0)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0


def test_same_seed_same_result_and_snapshots(digits: DataBundle) -> None:
    """Two runs with one seed give identical weights; snapshot 0 is the initial state and a
    snapshot at step k differs from both the start and the end."""
    trainer = instantiate("trainer", "sgd")
    a, b = build_model("digits_mlp", digits, 1), build_model("digits_mlp", digits, 1)
    start = {k: v.clone() for k, v in a.state_dict().items()}
    ra = trainer.fit(a, digits, FAST, seed=3, callbacks=[Snapshots([0, 5])])
    trainer.fit(b, digits, FAST, seed=3)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert all(torch.equal(ra.snapshots[0][k], start[k]) for k in start)
    w = next(k for k in start if k.endswith("weight"))
    assert not torch.equal(ra.snapshots[5][w], start[w])
    assert not torch.equal(ra.snapshots[5][w], a.state_dict()[w])


def test_resume_from_checkpoint_equals_uninterrupted_run(digits: DataBundle, tmp_path: Path) -> None:
    """A run killed after epoch 1 and resumed from its checkpoint ends with the same weights
    as the same run straight through."""
    trainer = instantiate("trainer", "sgd")
    straight = build_model("digits_mlp", digits, 2)
    trainer.fit(straight, digits, FAST, seed=0)
    ckpt = tmp_path / "run.ckpt"

    class Killed(Exception):
        pass

    def kill(record: dict[str, float]) -> None:
        raise Killed

    with pytest.raises(Killed):
        trainer.fit(build_model("digits_mlp", digits, 2), digits, FAST, seed=0, callbacks=[Checkpoint(ckpt), Progress(kill)])
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = build_model("digits_mlp", digits, 2)
    result = trainer.fit(resumed, digits, FAST, seed=0, callbacks=[Checkpoint(ckpt)])
    assert [h["epoch"] for h in result.history] == [1, 2]
    for k, v in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_augment_crop_offsets_uniform_and_flip_half() -> None:
    """Crop offsets cover 0..2·pad uniformly and about half the images flip."""
    n, pad = 4000, 2
    x = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    x[:, :, 0, 0] = 255  # a marker pixel: its position after the crop reveals the offsets
    out = augment_batch(x, Augment(crop_padding=pad, hflip=False), make_generator(0, "t"))
    pos = out.view(n, -1).argmax(1)
    has = out.view(n, -1).amax(1) > 0
    # marker lands at (pad - oy, pad - ox) when visible, i.e. for oy, ox <= pad
    visible = has.float().mean().item()
    assert visible == pytest.approx((pad + 1) ** 2 / (2 * pad + 1) ** 2, abs=0.03)
    rows = (pos[has] // 4).float()
    assert rows.mean().item() == pytest.approx(1.0, abs=0.1)  # uniform over 0..2
    y = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    y[:, :, :, 0] = 255
    flipped = augment_batch(y, Augment(hflip=True), make_generator(0, "f"))
    rate = (flipped[:, 0, 0, 1] == 255).float().mean().item()
    assert rate == pytest.approx(0.5, abs=0.03)
    assert torch.equal(augment_batch(y, Augment(), make_generator(0, "f")), y)


def test_train_data_override_is_used(digits: DataBundle) -> None:
    """``train_data`` replaces the train split: an epoch over 64 samples is one step."""
    small = ArrayData(x=digits.train.x[:64], y=digits.train.y[:64])
    model = build_model("digits_mlp", digits, 0)
    result = instantiate("trainer", "sgd").fit(model, digits, FAST, seed=0, train_data=small)
    assert result.steps == FAST.epochs


def _random_masks(model: torch.nn.Module, density: float = 0.2) -> Masks:
    g = torch.Generator().manual_seed(0)
    return Masks({layer.name: torch.rand(layer.shape, generator=g) < density for layer in prunable_layers(model)})


def test_divergence_raises_with_step_and_keeps_pruned_weights_zero(digits: DataBundle) -> None:
    """lr = 1e4 on digits stops training with DivergedError naming the step (a PrunekitError:
    one line); the diverged weights hold NaN/inf at kept positions and exact zeros at every
    pruned one (NaN x 0 would have been NaN)."""
    from prunekit.errors import DivergedError, PrunekitError

    model = build_model("digits_cnn", digits, 0)
    masks = _random_masks(model)
    masks.apply(model)
    config = TrainConfig(epochs=2, batch_size=64, lr=1e4, lr_schedule="constant")
    with pytest.raises(DivergedError) as err:
        instantiate("trainer", "sgd").fit(model, digits, config, masks=masks, seed=0)
    steps_per_epoch = math.ceil(len(digits.train) / 64)
    assert isinstance(err.value, PrunekitError)
    assert 1 <= err.value.step <= steps_per_epoch and err.value.epoch == 1
    message = str(err.value)
    assert f"diverged at step {err.value.step} (epoch 1)" in message and "\n" not in message
    params = dict(model.named_parameters())
    assert any(not torch.isfinite(params[n][m]).all() for n, m in masks.items())  # it did diverge
    for name, mask in masks.items():
        pruned = params[name].detach()[~mask]
        assert torch.equal(pruned, torch.zeros_like(pruned)), name


def test_non_finite_weights_stop_training_at_the_epoch_end(digits: DataBundle) -> None:
    """Non-finite weights that the loss does not see (an unused parameter) still stop the run:
    DivergedError at the last step of the first epoch, saying the weights are not finite."""
    from prunekit.errors import DivergedError

    model = build_model("digits_mlp", digits, 0)
    model.register_parameter("unused", torch.nn.Parameter(torch.tensor([1.0, float("inf")])))
    small = ArrayData(x=digits.train.x[:128], y=digits.train.y[:128])
    with pytest.raises(DivergedError, match="step 2 \\(epoch 1\\): the weights are not finite") as err:
        instantiate("trainer", "sgd").fit(model, digits, FAST, seed=0, train_data=small)
    assert (err.value.step, err.value.epoch) == (2, 1)


def _lrs_per_step(trainer, *args, **kwargs):  # type: ignore[no-untyped-def]
    """(the learning rate of every optimizer step, the result) of ``trainer.fit(...)``."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(lambda opt, a, k: seen.append(opt.param_groups[0]["lr"]))
    try:
        result = trainer.fit(*args, **kwargs)
    finally:
        handle.remove()
    return seen, result


def test_start_step_continues_the_lr_schedule(digits: DataBundle) -> None:
    """A run started at step k (late rewinding) takes the remaining steps with the learning
    rates steps k+1.. of the full run had, instead of restarting the schedule; epochs and
    step counts continue too, and a snapshot at k is the state it started from."""
    trainer = instantiate("trainer", "sgd")
    config = TrainConfig(epochs=3, batch_size=64, lr=0.05, lr_schedule="cosine", warmup_epochs=1)
    small = ArrayData(x=digits.train.x[:320], y=digits.train.y[:320])  # 5 steps per epoch
    full, _ = _lrs_per_step(trainer, build_model("digits_mlp", digits, 0), digits, config, seed=0, train_data=small)
    assert len(full) == 15
    k = 7
    late = build_model("digits_mlp", digits, 0)
    start = {n: v.clone() for n, v in late.state_dict().items()}
    lrs, result = _lrs_per_step(
        trainer, late, digits, config, seed=0, train_data=small, start_step=k, callbacks=[Snapshots([k, 12])]
    )
    assert lrs == full[k:]
    assert full[: 15 - k] != lrs  # restarting would have warmed up again
    assert result.steps == 15 and [h["epoch"] for h in result.history] == [2, 3]
    assert [h["step"] for h in result.history] == [10, 15]
    assert sorted(result.snapshots) == [k, 12]
    assert all(torch.equal(result.snapshots[k][n], start[n]) for n in start)


def test_start_step_outside_the_run_is_one_line(digits: DataBundle) -> None:
    """A start step past the protocol's last step is refused before training."""
    from prunekit.errors import PrunekitError

    small = ArrayData(x=digits.train.x[:128], y=digits.train.y[:128])
    with pytest.raises(PrunekitError, match=r"start_step 5 lies outside 0\.\.4"):
        instantiate("trainer", "sgd").fit(build_model("digits_mlp", digits, 0), digits, FAST, train_data=small, start_step=5)


def test_cli_train_precision_and_optimizer(capsys: pytest.CaptureFixture[str]) -> None:
    """`prunekit train --precision bf16 --optimizer adamw` trains with them (the JSON summary
    says so); an optimizer the trainer lacks is one line on stderr and a non-zero exit."""
    import json

    from tests.cli_runner import run_cli

    argv = ["train", "--model", "digits_mlp", "--epochs", "1", "--lr", "0.002", "--json"]
    code, out, _ = run_cli([*argv, "--precision", "bf16", "--optimizer", "adamw"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert (summary["precision"], summary["optimizer"]) == ("bf16", "adamw")
    assert summary["final_accuracy"] > 0.3  # it trained (chance is 0.1)
    code, out, err = run_cli([*argv, "--optimizer", "lion"], capsys)
    assert code != 0 and out == ""
    expected = (
        "error: trainer 'sgd' has no optimizer 'lion'; it offers adamw, sgd (a plugin adds "
        "others with its own trainer)"
    )
    assert err.strip().splitlines() == [expected]


def test_channels_last_is_a_layout_not_a_result(digits: DataBundle) -> None:
    """Training in channels_last (the default) gives the contiguous layout's weights up to float
    summation order (compared after one step: later steps amplify rounding), keeps pruned weights
    exactly zero, and hands the model back in the layout it came in (code that views weights
    flat keeps working)."""
    from prunekit_plugins.sgd import SGDTrainer

    one_step = ArrayData(x=digits.train.x[:64], y=digits.train.y[:64])
    config = TrainConfig(epochs=1, batch_size=64, lr=0.05, weight_decay=5e-4, lr_schedule="constant")
    states = {}
    for channels_last in (True, False):
        model = build_model("digits_cnn", digits, 0)
        masks = _random_masks(model, density=0.3)
        SGDTrainer(channels_last=channels_last).fit(model, digits, config, masks=masks, seed=0, train_data=one_step)
        assert all(p.is_contiguous() for p in model.parameters())
        params = dict(model.named_parameters())
        for name in masks:
            assert torch.all(params[name][masks[name] == 0] == 0)
        states[channels_last] = {k: v.clone() for k, v in model.state_dict().items()}
    initial = build_model("digits_cnn", digits, 0).state_dict()
    for name, value in states[False].items():
        if value.is_floating_point():
            torch.testing.assert_close(states[True][name], value, rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(states[True][n], initial[n]) for n in initial)  # it trained
