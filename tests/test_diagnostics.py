"""Diagnostics: layer table, collapsed layers, effective masks and effective sparsity."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from prunekit.diagnostics import collapsed_layers, effective_masks, effective_sparsity, layer_table
from prunekit.errors import PrunekitError
from prunekit.layers import prunable_layers
from prunekit.masks import Masks
from prunekit.plugins import get_plugins


def _chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=True), nn.ReLU(), nn.Linear(4, 2, bias=True))


def _ones(model: nn.Module) -> dict[str, torch.Tensor]:
    return {layer.name: torch.ones(layer.shape, dtype=torch.bool) for layer in prunable_layers(model)}


def test_pruned_outputs_of_a_hidden_unit_cut_its_inputs() -> None:
    """Layer 2 loses every weight leaving hidden unit j (its column j): the weights into unit j
    (row j of layer 1) no longer reach the output and become ineffective; nothing else does."""
    model = _chain()
    m = _ones(model)
    m["3.weight"][:, 1] = False
    masks = Masks(m)
    eff = effective_masks(model, masks, (3, 1, 1))
    expected_l1 = torch.ones(4, 3, dtype=torch.bool)
    expected_l1[1] = False
    assert torch.equal(eff["1.weight"], expected_l1)
    assert torch.equal(eff["3.weight"], m["3.weight"])
    sparsity = effective_sparsity(model, masks, (3, 1, 1))
    assert sparsity == pytest.approx(5 / 20)
    assert sparsity >= masks.sparsity()


def test_pruned_inputs_of_a_hidden_unit_cut_its_outputs() -> None:
    """Layer 1 loses every weight into hidden unit j (row j): the weights leaving unit j
    (column j of layer 2) carry no input signal and become ineffective — biases do not count
    as a path from the input."""
    model = _chain()
    m = _ones(model)
    m["1.weight"][2] = False
    eff = effective_masks(model, Masks(m), (3, 1, 1))
    expected_l2 = torch.ones(2, 4, dtype=torch.bool)
    expected_l2[:, 2] = False
    assert torch.equal(eff["3.weight"], expected_l2)
    assert torch.equal(eff["1.weight"], m["1.weight"])


def test_mixed_signs_do_not_cancel() -> None:
    """Weights whose signed contributions would cancel exactly are still effective (the probe
    uses the mask, not the weights)."""
    model = _chain()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1.0, 0.0]] * 4))
    m = _ones(model)
    assert effective_masks(model, Masks(m), (3, 1, 1)).kept() == 20


class _Residual(nn.Module):
    """stem conv → [conv a → BN → ReLU → conv b → BN] + skip → ReLU → pool → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.a = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.bn_b(self.b(torch.relu(self.bn_a(self.a(x)))))
        x = torch.relu(x + y)
        return self.fc(x.mean(dim=(2, 3)))


def test_residual_branch_with_a_collapsed_layer() -> None:
    """When conv b collapses, conv a's weights are cut from the output, while the skip keeps
    the stem and the classifier effective; BN running stats and modes do not matter and are
    left unchanged."""
    torch.manual_seed(0)
    model = _Residual()
    with torch.no_grad():
        model.bn_a.running_mean.fill_(5.0)  # would zero the branch if used as is
        model.bn_a.weight.fill_(-1.0)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    m = _ones(model)
    m["b.weight"][:] = False
    masks = Masks(m)
    eff = effective_masks(model, masks, (1, 5, 5))
    assert collapsed_layers(masks) == ["b.weight"]
    assert eff.layer_kept() == {"stem.weight": 36, "a.weight": 0, "b.weight": 0, "fc.weight": 12}
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    # intact branch: everything effective
    assert effective_masks(model, Masks(_ones(model)), (1, 5, 5)).kept() == Masks(_ones(model)).kept()


def test_dense_cnn_with_max_pool_is_fully_effective_and_sparse_is_not_less_sparse() -> None:
    """digits_cnn (BN, max-pool, avg-pool): dense masks are fully effective; for a random 95 %
    sparse mask the effective mask is a subset and effective sparsity ≥ sparsity."""
    get_plugins()
    model = timm.create_model("digits_cnn", num_classes=10)
    layers = prunable_layers(model)
    dense = Masks(_ones(model))
    assert effective_masks(model, dense, (1, 8, 8)).kept() == dense.kept()
    g = torch.Generator().manual_seed(0)
    sparse = Masks({layer.name: torch.rand(layer.shape, generator=g) < 0.05 for layer in layers})
    eff = effective_masks(model, sparse, (1, 8, 8))
    assert all(torch.equal(eff[n] & ~sparse[n], torch.zeros_like(sparse[n])) for n in sparse)
    assert effective_sparsity(model, sparse, (1, 8, 8)) >= sparse.sparsity()


def test_layer_table_and_collapsed_layers() -> None:
    """layer_table lists name, kind, shape, kept, total, density per layer in order."""
    model = _chain()
    m = _ones(model)
    m["1.weight"][0, :2] = False
    m["3.weight"][:] = False
    masks = Masks(m)
    rows = layer_table(prunable_layers(model), masks)
    assert rows == [
        {"name": "1.weight", "kind": "linear", "shape": (4, 3), "kept": 10, "total": 12, "density": 10 / 12},
        {"name": "3.weight", "kind": "linear", "shape": (2, 4), "kept": 0, "total": 8, "density": 0.0},
    ]
    assert collapsed_layers(masks) == ["3.weight"]


def test_layer_norm_passes_the_probe_through() -> None:
    """Linear → LayerNorm → ReLU → Linear: a LayerNorm would erase a constant probe; the probe
    passes it through per feature, so pruning the inputs of hidden unit 2 cuts exactly the
    weights leaving it, as without the norm."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 2))
    m = _ones(model)
    assert effective_masks(model, Masks(m), (3, 1, 1)).kept() == 20
    m["1.weight"][2] = False
    eff = effective_masks(model, Masks(m), (3, 1, 1))
    expected = torch.ones(2, 4, dtype=torch.bool)
    expected[:, 2] = False
    assert torch.equal(eff["4.weight"], expected)
    assert torch.equal(eff["1.weight"], m["1.weight"])


class _GroupNormNet(nn.Module):
    """conv a → GroupNorm → ReLU → conv b → GroupNorm → ReLU → pool → fc."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.gn_a = nn.GroupNorm(2, 4)
        self.b = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.gn_b = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.gn_a(self.a(x)))
        x = torch.relu(self.gn_b(self.b(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_group_norm_channel_cut() -> None:
    """GroupNorm model: conv b keeps no weight reading channel 1 of conv a, so conv a's
    filter 1 (18 weights) is ineffective; dense masks are fully effective."""
    torch.manual_seed(0)
    model = _GroupNormNet()
    dense = Masks(_ones(model))
    assert effective_masks(model, dense, (2, 5, 5)).kept() == dense.kept()
    m = _ones(model)
    m["b.weight"][:, 1] = False
    eff = effective_masks(model, Masks(m), (2, 5, 5))
    assert eff.layer_kept() == {"a.weight": 72 - 18, "b.weight": 144 - 36, "fc.weight": 12}
    assert not eff["a.weight"][1].any()


def test_zero_initialised_batch_norm_does_not_cut_its_branch() -> None:
    """timm's zero_init_last zeroes the last BatchNorm of a residual branch: only the masks
    decide connectivity, so a dense mask is still fully effective."""
    torch.manual_seed(0)
    model = _Residual()
    nn.init.zeros_(model.bn_b.weight)
    dense = Masks(_ones(model))
    assert effective_masks(model, dense, (1, 5, 5)).kept() == dense.kept()


class _SameTokens(nn.Module):
    """Every token is the same vector (a pooled image): softmax attention is uniform, its
    gradient with respect to the queries and keys exactly 0."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8, bias=False)
        self.qkv = nn.Linear(8, 24, bias=False)
        self.head = nn.Linear(8, 2)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.mean(dim=(2, 3))).unsqueeze(1).expand(-1, 4, -1)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        if self.fused:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        else:
            out = (q @ k.transpose(-2, -1) / 8**0.5).softmax(dim=-1) @ v
        return self.head(out.mean(dim=1))


@pytest.mark.parametrize("fused", [True, False])
def test_attention_queries_and_keys_count_as_paths(fused: bool) -> None:
    """Queries and keys are on paths to the output even when softmax's gradient cancels;
    pruning every value weight cuts queries, keys, values and the head's inputs."""
    torch.manual_seed(0)
    model = _SameTokens(fused)
    dense = Masks(_ones(model))
    assert effective_masks(model, dense, (3, 2, 2)).kept() == dense.kept()
    m = _ones(model)
    m["qkv.weight"][16:] = False  # the value rows
    eff = effective_masks(model, Masks(m), (3, 2, 2))
    assert eff.layer_kept() == {"embed.weight": 0, "qkv.weight": 0, "head.weight": 0}


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.fc(x.flatten(1))}


def test_a_model_the_probe_cannot_run_is_not_computed_never_raised() -> None:
    """A model whose output is a dict: effective_sparsity is None, the reason says "not
    computed for this model" and why, and nothing raises."""
    from prunekit.diagnostics import NOT_COMPUTED, effective_sparsity_or_reason, summary

    model = _DictOut()
    masks = Masks(_ones(model))
    assert effective_sparsity(model, masks, (3, 1, 1)) is None
    value, reason = effective_sparsity_or_reason(model, masks, (3, 1, 1))
    assert value is None and reason is not None and reason.startswith(NOT_COMPUTED) and "dict" in reason
    assert summary(model, masks, (3, 1, 1)) == {
        "effective_sparsity": None, "effective_sparsity_note": reason, "collapsed_layers": []
    }
    with pytest.raises(PrunekitError):
        effective_masks(model, masks, (3, 1, 1))


class _SaturatedGate(nn.Module):
    """x · hard_sigmoid(100 · gate(x)) → fc: the gate saturates (slope 0) on positive inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(2, 3, 1, bias=False)
        self.gate = nn.Conv2d(2, 3, 1, bias=False)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.body(x)) * torch.nn.functional.hardsigmoid(100 * self.gate(x))
        return self.fc(torch.sigmoid(y).mean(dim=(2, 3)))


def test_saturated_activations_do_not_cut_their_inputs() -> None:
    """A gate driven far into hard-sigmoid's flat part, and a sigmoid after it: the gate's
    weights are still on a path to the output (activations are the identity for the probe)."""
    model = _SaturatedGate()
    dense = Masks(_ones(model))
    assert effective_masks(model, dense, (2, 3, 3)).kept() == dense.kept()
    m = _ones(model)
    m["fc.weight"][:, 0] = False  # output channel 0 of the block reaches nothing
    eff = effective_masks(model, Masks(m), (2, 3, 3))
    assert eff.layer_kept() == {"body.weight": 4, "gate.weight": 4, "fc.weight": 4}


def test_a_gate_with_every_input_pruned_still_passes_its_signal() -> None:
    """x · sigmoid(gate(x)): with every gate weight pruned the gate is the constant 0.5, so
    the body and the classifier stay effective; only the gate's weights are gone."""
    model = _SaturatedGate()
    m = _ones(model)
    m["gate.weight"][:] = False
    eff = effective_masks(model, Masks(m), (2, 3, 3))
    assert eff.layer_kept() == {"body.weight": 6, "gate.weight": 0, "fc.weight": 6}


def test_dense_vit_is_fully_effective() -> None:
    """Dense masks on timm's ViT (img_size=32: 4 patch tokens and a class token that grow
    nearly identical with depth, LayerNorm, GELU) are fully effective: every query and key
    weight counts, in every block."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=3, img_size=32)
    dense = Masks(_ones(model))
    assert effective_masks(model, dense, (3, 32, 32)).layer_kept() == dense.layer_kept()


class _Squares(nn.Module):
    """fc then x ↦ x² twelve times: the probe's activations reach 10^1000s."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1)) * 4
        for _ in range(12):
            y = y * y
        return y


def test_an_overflowing_probe_is_not_computed() -> None:
    """A probe whose output is not finite gives "not computed" with the reason, never a
    result made of inf and nan."""
    from prunekit.diagnostics import effective_sparsity_or_reason

    model = _Squares()
    value, reason = effective_sparsity_or_reason(model, Masks(_ones(model)), (3, 1, 1))
    assert value is None and reason is not None and "overflowed" in reason


class _Scaled(nn.Module):
    """fc → · factor → x ↦ x² ``squarings`` times → fc: tiny or huge activations."""

    def __init__(self, factor: float, squarings: int) -> None:
        super().__init__()
        self.a = nn.Linear(3, 4, bias=False)
        self.b = nn.Linear(4, 2, bias=False)
        self.factor, self.squarings = factor, squarings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x.flatten(1)) * self.factor
        for _ in range(self.squarings):
            y = y * y
        return self.b(y)


@pytest.mark.parametrize(("factor", "squarings"), [(4.0, 7), (1e-12, 2)])
def test_float32_overflow_or_underflow_falls_back_to_float64(factor: float, squarings: int) -> None:
    """Activations of 10^77 (float32 overflows) or 10^-48 (float32 underflows to 0): the probe
    reruns in float64 and finds every weight effective, and a cut still cuts."""
    model = _Scaled(factor, squarings)
    m = _ones(model)
    assert effective_masks(model, Masks(m), (3, 1, 1)).kept() == 20
    m["b.weight"][:, 3] = False
    eff = effective_masks(model, Masks(m), (3, 1, 1))
    assert eff.layer_kept() == {"a.weight": 9, "b.weight": 6}
