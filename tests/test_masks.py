"""Masks: counting, enforcement under optimizers, files and mismatch errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import MaskMismatchError, PrunekitError
from prunekit.layers import PrunablePolicy, prunable_layers
from prunekit.masks import Masks
from tests.conftest import tiny_convnet


def _random_masks(model: nn.Module, density: float = 0.3, seed: int = 1) -> Masks:
    g = torch.Generator().manual_seed(seed)
    names = [layer.name for layer in prunable_layers(model)]
    params = dict(model.named_parameters())
    return Masks({n: torch.rand(params[n].shape, generator=g) < density for n in names})


def test_prunable_layers_in_module_order_weights_only(convnet: nn.Module) -> None:
    """Conv and Linear weights in registration order; no biases or BN parameters."""
    names = [layer.name for layer in prunable_layers(convnet)]
    assert names == ["0.weight", "3.weight", "7.weight"]
    assert [layer.name for layer in prunable_layers(convnet, PrunablePolicy(include_classifier=False))] == ["0.weight", "3.weight"]
    assert [layer.name for layer in prunable_layers(convnet, PrunablePolicy(include_first=False))] == ["3.weight", "7.weight"]


def test_density_counts(convnet: nn.Module) -> None:
    """density/sparsity/layer counts equal counts made directly on the tensors."""
    masks = _random_masks(convnet)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert masks.kept() == kept and masks.total() == total
    assert masks.density() == pytest.approx(kept / total)
    assert masks.sparsity() == pytest.approx(1 - kept / total)


def _batches(n: int = 50):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        yield torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 4, (8,), generator=g)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ],
    ids=["sgd-momentum-wd", "nesterov", "adamw"],
)
def test_masked_weights_stay_zero_and_zero_survivor_trains(make_optimizer) -> None:  # type: ignore[no-untyped-def]
    """After 50 steps pruned weights are exactly 0 and their optimizer state is 0 at masked
    positions, while a kept weight that starts at exactly 0 moves away from 0."""
    model = tiny_convnet()
    masks = _random_masks(model)
    params = dict(model.named_parameters())
    masks.apply(model)
    x0, y0 = next(iter(_batches(1)))
    nn.functional.cross_entropy(model(x0), y0).backward()
    grad = params["3.weight"].grad.flatten().abs() * masks["3.weight"].flatten()
    kept_pos = int(grad.argmax())  # a kept weight that receives gradient
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        params["3.weight"].view(-1)[kept_pos] = 0.0
    optimizer = make_optimizer(model.parameters())
    enforce = masks.enforcer(model, optimizer)
    for x, y in _batches():
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        enforce()
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0, name
        for value in optimizer.state[params[name]].values():
            if torch.is_tensor(value) and value.shape == mask.shape:
                assert torch.count_nonzero(value[~mask]) == 0, name
    assert params["3.weight"].view(-1)[kept_pos].item() != 0.0


def test_without_enforcement_momentum_revives_weights() -> None:
    """Control: masking once and training without the enforcer revives pruned weights, so the
    test above measures the enforcer and not the data."""
    model = tiny_convnet()
    masks = _random_masks(model)
    masks.apply(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in _batches(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    params = dict(model.named_parameters())
    assert torch.count_nonzero(params["3.weight"][~masks["3.weight"]]) > 0


def test_enforcer_zeroes_nan_and_inf_at_pruned_positions_only() -> None:
    """NaN and inf at pruned positions of weights and optimizer state become exactly +0.0
    (a multiplication by the mask would leave NaN); NaN at kept positions is left alone."""
    model = tiny_convnet()
    masks = _random_masks(model)
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    x, y = next(iter(_batches(1)))
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    w, keep = params["3.weight"], masks["3.weight"]
    pruned_at = int((~keep).flatten().nonzero()[0])
    kept_at = int(keep.flatten().nonzero()[0])
    with torch.no_grad():
        w.view(-1)[pruned_at] = float("nan")
        w.view(-1)[kept_at] = float("nan")
        w.view(-1)[int((~keep).flatten().nonzero()[1])] = float("-inf")
        optimizer.state[w]["exp_avg"].view(-1)[pruned_at] = float("inf")
        optimizer.state[w]["exp_avg_sq"].fill_(float("nan"))
    masks.enforcer(model, optimizer)()
    for name, mask in masks.items():
        pruned = params[name].detach()[~mask]
        assert torch.equal(pruned, torch.zeros_like(pruned)), name
        assert not torch.signbit(pruned).any(), name  # +0.0, never -0.0
        for key in ("exp_avg", "exp_avg_sq"):
            state = optimizer.state[params[name]][key][~mask]
            assert torch.equal(state, torch.zeros_like(state)), (name, key)
    assert torch.isnan(w.view(-1)[kept_at])
    assert torch.isnan(optimizer.state[w]["exp_avg_sq"][keep]).all()


def test_apply_zeroes_nan_weights_at_pruned_positions() -> None:
    """``Masks.apply`` on weights holding NaN gives exact zeros at pruned positions."""
    model = tiny_convnet()
    masks = _random_masks(model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    masks.apply(model)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0, name
        assert torch.isnan(params[name][mask]).all(), name


class _ReplacingMomentum(torch.optim.Optimizer):
    """A plugin-style optimizer that keeps a state tensor of the parameter's shape under its own
    key and *replaces* it with a new tensor every step (no in-place update)."""

    def __init__(self, params, lr: float = 0.1) -> None:  # type: ignore[no-untyped-def]
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["velocity"] = 0.9 * state.get("velocity", torch.zeros_like(p)) + p.grad
                state["scalar"] = torch.tensor(1.0)  # not the parameter's shape: left alone
                p.add_(state["velocity"], alpha=-group["lr"])


def test_enforcer_finds_plugin_optimizer_state_by_shape_every_step() -> None:
    """State tensors of an unknown optimizer, replaced by new tensors every step, are zeroed
    at pruned positions after every step; other state is not touched."""
    model = tiny_convnet()
    masks = _random_masks(model)
    masks.apply(model)
    params = dict(model.named_parameters())
    optimizer = _ReplacingMomentum(model.parameters())
    enforce = masks.enforcer(model, optimizer)
    for x, y in _batches(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        enforce()
        for name, mask in masks.items():
            velocity = optimizer.state[params[name]]["velocity"]
            assert torch.count_nonzero(velocity[~mask]) == 0, name
            assert torch.count_nonzero(velocity[mask]) > 0, name
            assert optimizer.state[params[name]]["scalar"].item() == 1.0


def test_enforcer_gradients_zeroes_pruned_gradients_only() -> None:
    """``gradients()`` zeroes pruned gradients and leaves kept ones unchanged."""
    model = tiny_convnet()
    masks = _random_masks(model)
    x, y = next(iter(_batches(1)))
    nn.functional.cross_entropy(model(x), y).backward()
    params = dict(model.named_parameters())
    before = {n: params[n].grad.clone() for n in masks}
    masks.enforcer(model).gradients()
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name].grad[~mask]) == 0, name
        assert torch.equal(params[name].grad[mask], before[name][mask]), name
        assert torch.count_nonzero(before[name][~mask]) > 0, name  # there was something to zero


def test_enforcer_follows_a_parameter_whose_storage_was_replaced() -> None:
    """Reassigning a parameter's data (as ``model.to(...)`` does) between calls does not leave
    the enforcer writing to the old storage: the new weights are zeroed at pruned positions."""
    model = tiny_convnet()
    masks = _random_masks(model)
    enforce = masks.enforcer(model)
    enforce()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in masks:
            params[name].data = torch.randn_like(params[name]) + 5.0
    enforce()
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0, name
        assert torch.count_nonzero(params[name][mask]) == int(mask.sum()), name


def test_enforcer_on_channels_last_weights() -> None:
    """A channels_last model (the CUDA layout) is zeroed at exactly the pruned positions, kept
    values untouched, and keeps its layout."""
    model = tiny_convnet().to(memory_format=torch.channels_last)
    masks = _random_masks(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in masks:
            params[name].copy_(torch.arange(params[name].numel()).view(params[name].shape) + 1.0)
    masks.enforcer(model)()
    for name, mask in masks.items():
        expected = (torch.arange(mask.numel()).view(mask.shape) + 1.0) * mask
        assert torch.equal(params[name].detach(), expected), name
    assert params["3.weight"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_enforcer_exact_in_every_float_width(dtype: torch.dtype) -> None:
    """The bit-level zeroing works for 16- and 64-bit floats as well: pruned positions become
    +0.0 and kept values keep their exact bits."""
    model = tiny_convnet().to(dtype)
    masks = _random_masks(model)
    params = dict(model.named_parameters())
    before = {n: params[n].detach().clone() for n in masks}
    masks.enforcer(model)()
    for name, mask in masks.items():
        w = params[name].detach()
        assert torch.count_nonzero(w[~mask]) == 0 and not torch.signbit(w[~mask]).any(), name
        assert torch.equal(w[mask].view(torch.uint8), before[name][mask].view(torch.uint8)), name


def test_save_load_round_trip(tmp_path: Path, convnet: nn.Module) -> None:
    """Masks and metadata survive a file round trip, in the original layer order."""
    masks = _random_masks(convnet)
    path = masks.save(tmp_path / "m.safetensors", {"method": "snip", "sparsity": 0.9, "seed": 3})
    loaded, meta = Masks.load(path)
    assert loaded.equals(masks) and list(loaded) == list(masks)
    assert meta["method"] == "snip" and meta["sparsity"] == "0.9" and meta["seed"] == "3"
    assert meta["content_hash"] == masks.content_hash()
    assert not list(tmp_path.glob("*.tmp"))


def test_mismatched_masks_list_names_and_shapes(tmp_path: Path) -> None:
    """Masks made for another model name the differing names and shapes."""
    masks = _random_masks(tiny_convnet(num_classes=4))
    other = tiny_convnet(num_classes=7)
    with pytest.raises(MaskMismatchError, match=r"7\.weight \(4, 6\) vs \(7, 6\)"):
        masks.apply(other)
    extra = Masks({**masks, "nope.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(MaskMismatchError, match=r"nope.weight"):
        extra.check_fits(tiny_convnet())


def test_load_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    """A missing file and a file that is not a mask file give clear errors."""
    with pytest.raises(PrunekitError, match="does not exist"):
        Masks.load(tmp_path / "none.safetensors")
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a safetensors file at all")
    with pytest.raises(PrunekitError, match="not a prunekit mask file"):
        Masks.load(bogus)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(PrunekitError, match="not a prunekit mask file"):
        Masks.load(foreign)


def test_select_top_equals_stable_sort_with_ties() -> None:
    """Top-k selection keeps exactly k per layer: the same set as a stable descending sort,
    ties at the threshold taken by position."""
    from prunekit.layers import PrunableLayer
    from prunekit.selection import select_top

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (40, 7), generator=g).float()  # many ties
    layer = PrunableLayer(name="w", module="", kind="linear", shape=(40, 7), index=0)
    for k in (0, 1, 13, 139, 140, 280):
        mask = select_top([layer], {"w": scores}, {"w": k})["w"].flatten()
        order = torch.argsort(scores.flatten(), descending=True, stable=True)[:k]
        expected = torch.zeros(280, dtype=torch.bool)
        expected[order] = True
        assert int(mask.sum()) == k and torch.equal(mask, expected), k
