"""The built-in models: timm registration, shapes, prunable counts and init statistics."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

import prunekit_plugins.models as models
from prunekit_plugins.models import MODEL_NAMES

DIGITS = {"digits_cnn", "digits_mlp"}
# Conv + Linear layers: VGG convs + 1; ResNet (depth − 1) convs + 2 projections + 1; digits nets.
PRUNABLE_LAYERS = {
    "cifar_vgg16_bn": 13 + 1,
    "cifar_vgg19_bn": 16 + 1,
    "cifar_resnet20": 19 + 2 + 1,
    "cifar_resnet32": 31 + 2 + 1,
    "cifar_resnet56": 55 + 2 + 1,
    "digits_cnn": 3 + 1,
    "digits_mlp": 2,
}

# Architecture arithmetic, written out independently of the code under test.
VGG19_CFG = [64, 64, "M", 128, 128, "M"] + [256] * 4 + ["M"] + [512] * 4 + ["M"] + [512] * 4


def _input_shape(name: str) -> tuple[int, int, int]:
    return (1, 8, 8) if name in DIGITS else (3, 32, 32)


def _prunable(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.fixture(scope="module")
def vgg19() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("cifar_vgg19_bn")


@pytest.fixture(scope="module")
def resnet32() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("cifar_resnet32")


def test_model_names_are_unique_and_complete() -> None:
    """MODEL_NAMES lists the seven built-in models once each."""
    assert len(set(MODEL_NAMES)) == len(MODEL_NAMES) == 7
    assert {"cifar_vgg19_bn", "cifar_resnet32", "digits_cnn", "digits_mlp"} <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_registered_in_timm(name: str) -> None:
    """Every reported name is in timm.list_models() and has a default cfg without weights."""
    assert name in timm.list_models()
    cfg = timm.models.get_pretrained_cfg(name)
    assert cfg is not None and not cfg.has_weights
    assert cfg.input_size == _input_shape(name)
    assert cfg.num_classes == 10
    assert cfg.first_conv and cfg.classifier


def test_hook_reports_every_model() -> None:
    """The register_models hook reports exactly MODEL_NAMES, each with a description."""
    seen: list[tuple[str, str]] = []
    models.register_models(register=lambda name, description=None: seen.append((name, description)))
    assert [n for n, _ in seen] == list(MODEL_NAMES)
    assert all(d for _, d in seen)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shape(name: str, num_classes: int) -> None:
    """timm.create_model builds the net with num_classes; a 2-image batch gives (2, num_classes).

    Also checks the prunable layer count and that the cfg's first_conv / classifier name the
    first and last prunable modules.
    """
    model = timm.create_model(name, num_classes=num_classes).eval()
    assert len(_prunable(model)) == PRUNABLE_LAYERS[name]
    with torch.no_grad():
        out = model(torch.randn(2, *_input_shape(name)))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    classifier = model.get_submodule(model.pretrained_cfg["classifier"])
    assert isinstance(classifier, nn.Linear) and classifier.out_features == num_classes
    first = model.get_submodule(model.pretrained_cfg["first_conv"])
    assert first is _first_prunable(model)
    assert classifier.weight is _prunable(model)[-1]


def _first_prunable(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("name", ["cifar_resnet20", "digits_cnn"])
def test_in_chans_and_channels_last(name: str) -> None:
    """in_chans changes the first layer, and a channels_last model gives the same output."""
    model = timm.create_model(name, in_chans=2).eval()
    assert _first_prunable(model).in_channels == 2
    x = torch.randn(2, 2, *_input_shape(name)[1:])
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pretrained_raises(name: str) -> None:
    """No weights exist: pretrained=True raises a ValueError naming the model."""
    with pytest.raises(ValueError, match=name):
        timm.create_model(name, pretrained=True)


def test_vgg19_prunable_count(vgg19: nn.Module) -> None:
    """cifar_vgg19_bn (10 classes): 16 convs + 1 Linear = 17 layers, 20,024,000 prunable weights."""
    expected, cin = 0, 3
    for v in VGG19_CFG:
        if v != "M":
            expected += 9 * cin * int(v)
            cin = int(v)
    expected += 512 * 10
    assert expected == 20_024_000
    weights = _prunable(vgg19)
    assert len(weights) == 17
    assert sum(w.numel() for w in weights) == expected


def test_resnet32_prunable_count(resnet32: nn.Module) -> None:
    """cifar_resnet32 (2× width, 10 classes): 34 prunable layers, 1,855,584 prunable weights."""
    widths, n = (32, 64, 128), 5
    expected = 9 * 3 * widths[0]  # stem
    cin = widths[0]
    for w in widths:
        for _ in range(n):
            expected += 9 * cin * w + 9 * w * w + (cin * w if cin != w else 0)
            cin = w
    expected += 128 * 10
    assert expected == 1_855_584
    weights = _prunable(resnet32)
    assert len(weights) == 1 + 3 * n * 2 + 2 + 1 == 34
    assert sum(w.numel() for w in weights) == expected
    # the two 1x1 projections sit where the shape changes
    assert sorted(w.shape[1] for w in weights if w.dim() == 4 and w.shape[-1] == 1) == [32, 64]
    assert weights[0].shape == (32, 3, 3, 3) and weights[-1].shape == (10, 128)


def test_vgg19_init(vgg19: nn.Module) -> None:
    """VGG: conv std ~ sqrt(2/fan_in), Linear std ~ 0.01 (within 10%), zero biases, BN 1/0."""
    for m in vgg19.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * 9
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1)
            assert m.bias is None or not m.bias.any()
        elif isinstance(m, nn.Linear):
            assert m.weight.std().item() == pytest.approx(0.01, rel=0.1)
            assert not m.bias.any()
        elif isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and not m.bias.any()


def test_resnet32_init(resnet32: nn.Module) -> None:
    """ResNet: conv std ~ sqrt(2/fan_out) (within 10%), no conv biases, Linear std ~ 0.01."""
    for m in resnet32.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
            assert m.bias is None
        elif isinstance(m, nn.Linear):
            assert m.weight.std().item() == pytest.approx(0.01, rel=0.1)
            assert not m.bias.any()


@pytest.mark.parametrize("name", ["cifar_resnet20", "cifar_resnet56"])
def test_resnet_base_width(name: str) -> None:
    """ResNet20/56 are 1x width: stem 3 -> 16 channels, classifier 64 -> classes."""
    weights = _prunable(timm.create_model(name))
    assert weights[0].shape == (16, 3, 3, 3) and weights[-1].shape == (10, 64)
