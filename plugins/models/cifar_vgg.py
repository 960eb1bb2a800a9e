"""VGG-BN for CIFAR (32×32 inputs), as in Su et al. 2020 and the GraSP code.

Models: ``cifar_vgg16_bn``, ``cifar_vgg19_bn``.

Architecture: 3×3 convs (padding 1, with bias as in the reference code), each followed by
BatchNorm2d and ReLU; 2×2 max-pools between stages but *not* after the last stage, which ends
with global average pooling (the reference's ``AvgPool2d(2)`` on the 2×2 map of a 32×32 input;
``AdaptiveAvgPool2d(1)`` here, so 64×64 Tiny-ImageNet inputs pool the 4×4 map as the reference's
``AvgPool2d(4)`` does), then ONE ``Linear(512, num_classes)``.

Prunable layers (every Conv2d / Linear weight): VGG19 has 16 convs + 1 Linear = 17 layers and,
with 10 classes, 20,018,880 + 5,120 = 20,024,000 prunable weights.

Init (reference ``_initialize_weights``): conv weights He-normal fan-in, N(0, 2/(9·c_in)); conv
biases 0; BN weight 1, bias 0; Linear weight N(0, 0.01²), bias 0.

``default_cfgs`` record the CIFAR-10 mean/std of the authors' code (GraSP / Su et al.: std
0.2023/0.1994/0.2010) as timm metadata only: prunekit never reads them. Inputs are normalised by
the dataset plugin (``cifar10``'s ``normalization`` option; ``grasp_code`` gives these values).
CIFAR-100 and Tiny-ImageNet use the same architectures with ``num_classes`` 100 / 200.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["CifarVgg"]

# Conv widths and 'M' (2×2 max-pool); no pool after the last stage (global avg-pool follows).
VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512,
    ),
}


class CifarVgg(nn.Module):
    """VGG-BN for small images: conv-BN-ReLU stages, global average pool, one Linear."""

    def __init__(
        self, cfg: tuple[int | str, ...], num_classes: int = 10, in_chans: int = 3
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(v, int)
                layers += [
                    nn.Conv2d(channels, v, kernel_size=3, padding=1),
                    nn.BatchNorm2d(v),
                    nn.ReLU(inplace=True),
                ]
                channels = v
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_cifar_vgg(
    variant: str, cfg_key: str, pretrained: bool = False, **kwargs: Any
) -> CifarVgg:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights; create it with pretrained=False")
    return build_model_with_cfg(CifarVgg, variant, pretrained, cfg=VGG_CFGS[cfg_key], **kwargs)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (2, 2),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2023, 0.1994, 0.2010),
        "first_conv": "features.0",
        "classifier": "classifier",
        "license": "mit",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"cifar_vgg16_bn": _cfg(), "cifar_vgg19_bn": _cfg()})


@register_model
def cifar_vgg16_bn(pretrained: bool = False, **kwargs: Any) -> CifarVgg:
    """VGG16-BN for CIFAR: 13 conv 3×3 + BN + ReLU, 4 max-pools, global avg-pool, one Linear."""
    return _create_cifar_vgg("cifar_vgg16_bn", "vgg16", pretrained, **kwargs)


@register_model
def cifar_vgg19_bn(pretrained: bool = False, **kwargs: Any) -> CifarVgg:
    """VGG19-BN for CIFAR: 16 conv 3×3 + BN + ReLU, 4 max-pools, global avg-pool, one Linear."""
    return _create_cifar_vgg("cifar_vgg19_bn", "vgg19", pretrained, **kwargs)
