"""Which parameters are prunable, enumerated in module registration order.

The default policy (paper-spec.md) prunes the ``.weight`` of every Conv and Linear module —
first conv, 1×1 projection shortcuts and the classifier included — and never biases or
normalisation parameters. The policy can leave out the first layer or the classifier.
"""

from __future__ import annotations

from typing import Literal

import attrs
from torch import nn

from prunekit.errors import PrunekitError

_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@attrs.frozen(kw_only=True)
class PrunableLayer:
    """One prunable weight tensor."""

    name: str  # parameter name, e.g. "stages.0.0.conv1.weight"
    module: str  # module name, e.g. "stages.0.0.conv1"
    kind: Literal["conv", "linear"]
    shape: tuple[int, ...]
    index: int  # 0-based position in module order

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@attrs.frozen(kw_only=True)
class PrunablePolicy:
    """Which layers to prune; the default prunes every conv and linear weight."""

    include_first: bool = True
    include_classifier: bool = True


def prunable_layers(model: nn.Module, policy: PrunablePolicy | None = None) -> list[PrunableLayer]:
    """Conv and Linear weights of ``model`` in module registration order, filtered by ``policy``.

    The classifier is the last Linear module in registration order; the first layer is the first
    prunable module. Modules reached twice (shared) are listed once.
    """
    policy = policy or PrunablePolicy()
    found: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _PRUNABLE_TYPES) and id(module) not in seen:
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter):
                seen.add(id(module))
                found.append((module_name, module))
    if not found:
        raise PrunekitError(
            f"{type(model).__name__} has no prunable parameters (no Conv or Linear weights); "
            "prunekit prunes the weights of Conv and Linear modules"
        )
    linear_positions = [i for i, (_, m) in enumerate(found) if isinstance(m, nn.Linear)]
    classifier = linear_positions[-1] if linear_positions else None
    keep = []
    for i, (module_name, module) in enumerate(found):
        if i == 0 and not policy.include_first:
            continue
        if i == classifier and not policy.include_classifier:
            continue
        keep.append((module_name, module))
    layers = []
    for index, (module_name, module) in enumerate(keep):
        prefix = f"{module_name}." if module_name else ""
        layers.append(
            PrunableLayer(
                name=f"{prefix}weight",
                module=module_name,
                kind="linear" if isinstance(module, nn.Linear) else "conv",
                shape=tuple(module.weight.shape),
                index=index,
            )
        )
    return layers


def total_prunable(layers: list[PrunableLayer]) -> int:
    return sum(layer.numel for layer in layers)
