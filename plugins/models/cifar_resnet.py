"""ResNets for CIFAR (32×32 inputs): ``cifar_resnet20``, ``cifar_resnet32``, ``cifar_resnet56``.

Architecture (He et al. 2016, CIFAR variant; layout of the Su et al. / GraSP code): a 3×3 stem
conv + BN + ReLU, three stages of ``n = (depth − 2) / 6`` BasicBlocks
(conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU) with strides 1 / 2 / 2, global
average pooling and one Linear.
Convs have no bias. Where a block changes the shape (stride 2 or more channels) the shortcut is a
1×1 conv (no bias, stride 2) + BN projection; elsewhere it is the identity.

Widths are ``(16, 32, 64) × width``:

* ``cifar_resnet32`` uses ``width=2`` (32 / 64 / 128), the "ResNet32" of Su et al. and GraSP
  ("we double the #filters"): 34 prunable layers (stem + 30 block convs + 2 projections +
  Linear) and, with 10 classes, 1,855,584 prunable weights;
* ``cifar_resnet20`` and ``cifar_resnet56`` use ``width=1`` (16 / 32 / 64), the common
  He et al. sizes. (The reference code switches to Bottleneck blocks for depth ≥ 54; here every
  depth uses BasicBlocks, the usual ResNet56.)

Init (reference code): conv weights Kaiming-normal fan-out, N(0, 2/(k²·c_out)); BN weight 1,
bias 0; Linear weight N(0, 0.01²), bias 0.

``default_cfgs`` record the CIFAR-10 mean/std of the authors' code (GraSP / Su et al.: std
0.2023/0.1994/0.2010) as timm metadata only: prunekit never reads them. Inputs are normalised by
the dataset plugin (``cifar10``'s ``normalization`` option; ``grasp_code`` gives these values).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["BasicBlock", "CifarResNet"]


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the shortcut (identity or 1×1 conv + BN), then ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 with BasicBlocks and widths (16, 32, 64) × ``width``."""

    def __init__(
        self, depth: int = 32, width: int = 1, num_classes: int = 10, in_chans: int = 3
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        widths = [16 * width, 32 * width, 64 * width]
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        channels = widths[0]
        stages: list[nn.Module] = []
        for i, out_chs in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(channels, out_chs, stride))
                channels = out_chs
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.global_pool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights; create it with pretrained=False")
    return build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2023, 0.1994, 0.2010),
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "mit",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {"cifar_resnet20": _cfg(), "cifar_resnet32": _cfg(), "cifar_resnet56": _cfg()}
)


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet20 for CIFAR: 3 × 3 BasicBlocks, widths 16 / 32 / 64."""
    model_args = {"depth": 20, "width": 1}
    return _create_cifar_resnet("cifar_resnet20", pretrained, **dict(model_args, **kwargs))


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet32 at 2× width (Su et al., GraSP): 3 × 5 BasicBlocks, widths 32 / 64 / 128."""
    model_args = {"depth": 32, "width": 2}
    return _create_cifar_resnet("cifar_resnet32", pretrained, **dict(model_args, **kwargs))


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet56 for CIFAR: 3 × 9 BasicBlocks, widths 16 / 32 / 64."""
    model_args = {"depth": 56, "width": 1}
    return _create_cifar_resnet("cifar_resnet56", pretrained, **dict(model_args, **kwargs))
