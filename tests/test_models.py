"""The built-in models: timm registration, shapes, prunable counts and init statistics."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

from prunekit_plugins import models
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


# ------------------------------------------------------------------ timm options and policy
def _meta(name: str, **options: object) -> nn.Module:
    """A timm model on the meta device (shapes only, nothing initialised)."""
    with torch.device("meta"):
        return timm.create_model(name, num_classes=4, **options)


def _synthetic(size: int = 32):  # type: ignore[no-untyped-def]
    from prunekit.pipeline import instantiate

    return instantiate(
        "dataset", "synthetic", {"num_classes": 2, "train_size": 4, "test_size": 2, "height": size, "width": size}
    ).load(None)


def test_build_model_names_the_option_for_an_input_size_mismatch() -> None:
    """vit_tiny_patch16_224 on 32×32 data: one line naming img_size=32; with the option the
    model builds and runs, and its patch grid fits the data."""
    from prunekit.errors import PrunekitError
    from prunekit.pipeline import build_model

    data = _synthetic()
    with pytest.raises(PrunekitError) as err:
        build_model("vit_tiny_patch16_224", data, 0)
    assert str(err.value).startswith(
        "vit_tiny_patch16_224 expects 224x224 input, the data has 32x32: pass --model-option img_size=32"
    )
    assert "\n" not in str(err.value)
    model = build_model("vit_tiny_patch16_224", data, 0, {"img_size": 32})
    assert model.patch_embed.grid_size == (2, 2)


def test_build_model_passes_options_to_timm() -> None:
    """zero_init_last=False keeps the last BatchNorm of each block at 1; drop_path_rate
    reaches the blocks; the same seed gives the same weights."""
    from prunekit.pipeline import build_model

    data = _synthetic()
    default = build_model("resnet18", data, 0)
    assert not default.layer1[0].bn2.weight.any()
    plain = build_model("resnet18", data, 0, {"zero_init_last": False, "drop_path_rate": 0.1})
    assert (plain.layer1[0].bn2.weight == 1).all()
    assert plain.layer4[1].drop_path.drop_prob > 0
    again = build_model("resnet18", data, 0, {"zero_init_last": False, "drop_path_rate": 0.1})
    assert torch.equal(again.conv1.weight, plain.conv1.weight)


def test_digits_cnn_pool_after_moves_the_pool_and_keeps_the_weights() -> None:
    """pool_after=1 (the quick suite's layout): the second conv sees 4×4 maps instead of 8×8,
    with the same prunable weights; the default layout is unchanged (so results stored under
    plain digits_cnn keep their meaning); another value is one clear line."""
    from prunekit.errors import PrunekitError
    from prunekit.layers import prunable_layers
    from prunekit.pipeline import build_model, load_dataset

    data = load_dataset("digits")
    seen: dict[str, tuple[int, ...]] = {}

    def sizes(model: nn.Module) -> list[tuple[int, ...]]:
        seen.clear()
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        handles = [c.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(str(i), tuple(a[0].shape[-2:]))) for i, c in enumerate(convs)]
        model.eval()
        model(torch.zeros(2, 1, 8, 8))
        for h in handles:
            h.remove()
        return [seen[str(i)] for i in range(len(convs))]

    default = build_model("digits_cnn", data, 0)
    early = build_model("digits_cnn", data, 0, {"pool_after": 1})
    assert sizes(default) == [(8, 8), (8, 8), (4, 4)]
    assert sizes(early) == [(8, 8), (4, 4), (4, 4)]
    shapes = lambda m: [layer.shape for layer in prunable_layers(m)]  # noqa: E731
    assert shapes(early) == shapes(default) and len(shapes(default)) == 4
    assert [n for n, _ in default.named_parameters()][:2] == ["features.0.weight", "features.1.weight"]
    assert default.features[6].__class__ is nn.MaxPool2d  # the layout stored results were made with
    with pytest.raises(PrunekitError, match="pool_after must be 1 or 2") as err:
        build_model("digits_cnn", data, 0, {"pool_after": 3})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": "red"}, "model 'resnet18' has no option 'colour'"),
        ({"in_chans": 1}, "model option in_chans is set by the dataset"),
        ({"norm_layer": "no_such_norm"}, "cannot build model 'resnet18' with options {norm_layer=no_such_norm}"),
    ],
)
def test_bad_model_options_are_one_line(options: dict[str, object], message: str) -> None:
    """Unknown, reserved and invalid model options: one PrunekitError line."""
    from prunekit.errors import PrunekitError
    from prunekit.pipeline import build_model

    with pytest.raises(PrunekitError, match=message.replace("{", r"\{").replace("}", r"\}")) as err:
        build_model("resnet18", _synthetic(), 0, options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("32", 32), ("0.5", 0.5), ("1e-3", 1e-3), ("false", False), ("True", True), ("none", None),
     ("null", None), ("[8, 16]", [8, 16]), ("groupnorm", "groupnorm"), ("", "")],
)
def test_parse_value(text: str, value: object) -> None:
    """Model option values: ints, floats, booleans, None, JSON lists, else strings."""
    from prunekit.pipeline import parse_value

    got = parse_value(text)
    assert got == value and type(got) is type(value)


def _weights_of(model: nn.Module, kinds: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)) -> list[str]:
    return [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, kinds)]


def test_policy_default_prunes_every_conv_and_linear_weight() -> None:
    """On ViT, ConvNeXt, EfficientNet and RegNet the default policy prunes exactly the Conv
    and Linear weights, in module order, and nothing else."""
    from prunekit.layers import prunable_layers

    for name, options in (("vit_tiny_patch16_224", {"img_size": 32}), ("convnext_atto", {}),
                          ("efficientnet_b0", {}), ("regnetx_002", {})):
        model = _meta(name, **options)
        assert [layer.name for layer in prunable_layers(model)] == _weights_of(model), name


def test_policy_categories_on_vit() -> None:
    """ViT: attention=False leaves the 24 qkv/proj weights dense; embeddings=False the patch
    embedding (although it is also the first layer); positional_embeddings=True adds pos_embed;
    norm=True adds the 25 LayerNorm weights; include/exclude patterns add and remove by name."""
    from prunekit.layers import PrunablePolicy, prunable_layers

    model = _meta("vit_tiny_patch16_224", img_size=32)
    default = [layer.name for layer in prunable_layers(model)]
    assert len(default) == 1 + 12 * 4 + 1
    cats = {layer.name: layer.category for layer in prunable_layers(model)}
    assert cats["patch_embed.proj.weight"] == "first" and cats["head.weight"] == "classifier"
    assert cats["blocks.3.attn.qkv.weight"] == "attention" and cats["blocks.3.mlp.fc1.weight"] == "other"

    def names(**kw: object) -> list[str]:
        return [layer.name for layer in prunable_layers(model, PrunablePolicy(**kw))]  # type: ignore[arg-type]

    no_attn = names(attention=False)
    assert len(no_attn) == len(default) - 24 and not any(".attn." in n for n in no_attn)
    assert "patch_embed.proj.weight" not in names(embeddings=False)
    with_pos = prunable_layers(model, PrunablePolicy(positional_embeddings=True))
    assert with_pos[0].name == "pos_embed" and with_pos[0].kind == "other"
    norms = [n for n in names(norm=True) if n not in default]
    assert len(norms) == 25 and all("norm" in n for n in norms)
    picked = names(include=("cls_token",), exclude=("blocks.0.*", "head.weight"))
    assert picked[0] == "cls_token" and "head.weight" not in picked
    assert not any(n.startswith("blocks.0.") for n in picked)


def test_policy_depthwise_and_pointwise_on_efficientnet() -> None:
    """EfficientNet-B0: depthwise=False leaves exactly the convs with groups == in_channels
    dense; pointwise=False the other 1×1 convs (expansions, projections, SE, head conv)."""
    from prunekit.layers import PrunablePolicy, prunable_layers

    model = _meta("efficientnet_b0")
    convs = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    depthwise = {n for n, m in convs.items() if m.groups == m.in_channels > 1}
    pointwise = {n for n, m in convs.items() if m.kernel_size == (1, 1) and n not in depthwise}
    assert len(depthwise) == 16 and pointwise
    everything = set(_weights_of(model))
    assert {layer.name for layer in prunable_layers(model, PrunablePolicy(depthwise=False))} == everything - depthwise
    assert {layer.name for layer in prunable_layers(model, PrunablePolicy(pointwise=False))} == everything - pointwise


def test_policy_is_recordable_and_new_fields_are_no_ops() -> None:
    """as_dict is JSON-ready and rebuilds the same policy; every field added after the first
    results is a no-op field (left out of result identities at its default)."""
    import json

    import attrs

    from prunekit.identity import NOOP_DEFAULT
    from prunekit.layers import PrunablePolicy

    policy = PrunablePolicy(attention=False, include=("pos_embed",), exclude=("head.*",))
    recorded = json.loads(json.dumps(policy.as_dict()))
    assert PrunablePolicy.from_options(recorded) == policy
    old = {"include_first", "include_classifier"}
    for field in attrs.fields(PrunablePolicy):
        assert (field.name in old) != bool(field.metadata.get(NOOP_DEFAULT)), field.name


@pytest.mark.parametrize(
    ("options", "message"),
    [({"atention": False}, "unknown prunable-parameter option"), ({"attention": "no"}, "must be true or false")],
)
def test_policy_options_errors(options: dict[str, object], message: str) -> None:
    """A misspelt or non-boolean policy option is a one-line error listing the options."""
    from prunekit.errors import PrunekitError
    from prunekit.layers import PrunablePolicy

    with pytest.raises(PrunekitError, match=message):
        PrunablePolicy.from_options(options)


def test_policy_pattern_matching_nothing_is_an_error() -> None:
    """An include or exclude pattern that matches no parameter is an error showing what the
    names look like, so a typo never silently changes what is pruned."""
    from prunekit.errors import PrunekitError
    from prunekit.layers import PrunablePolicy, prunable_layers

    model = _meta("resnet18")
    with pytest.raises(PrunekitError, match=r"exclude pattern 'layer9\.\*' matches no parameter.*conv1\.weight"):
        prunable_layers(model, PrunablePolicy(exclude=("layer9.*",)))
    with pytest.raises(PrunekitError, match="leaves no parameter"):
        prunable_layers(model, PrunablePolicy(exclude=("*",)))


@pytest.mark.parametrize(
    ("name", "stem"),
    [("convnext_atto", "stem.0.weight"), ("regnetx_002", "stem.conv.weight"), ("mobilenetv3_small_100", "conv_stem.weight")],
)
def test_stems_are_embeddings(name: str, stem: str) -> None:
    """Stem convolutions are the first layer and an embedding: embeddings=False keeps them
    dense."""
    from prunekit.layers import PrunablePolicy, prunable_layers

    model = _meta(name)
    assert prunable_layers(model)[0].name == stem
    assert stem not in {layer.name for layer in prunable_layers(model, PrunablePolicy(embeddings=False))}
