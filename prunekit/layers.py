"""Which parameters are prunable, enumerated in parameter (module registration) order.

The default policy (paper-spec.md) prunes the ``.weight`` of every Conv and Linear module and
never biases or normalisation parameters. :class:`PrunablePolicy` makes every architectural
choice explicit, so that a timm model's stems, attention projections, depthwise and 1×1 convs,
positional embeddings and norm parameters can each be kept dense or pruned, and any parameter
added or left out by name (glob patterns). A Conv/Linear weight belongs to every category
that describes it and is pruned only when the policy prunes all of them (ViT's
``patch_embed.proj`` is both ``first`` and ``embedding``):

==============  ==============================================================  ==========
category        what                                                            default
==============  ==============================================================  ==========
``first``       the first Conv/Linear weight of the model                       pruned
``classifier``  the last Linear weight (the head)                               pruned
``embedding``   patch and stem embeddings: modules named ``*stem*`` or          pruned
                ``*patch_embed*`` (``conv_stem``, ``stem.0``, ``patch_embed.proj``)
``attention``   Linear/Conv weights inside an attention module (a module whose   pruned
                class name contains ``Attention``/``Attn``, or
                ``nn.MultiheadAttention``): ``qkv``, ``proj``, ``q``/``k``/``v``
``depthwise``   convs with ``groups == in_channels > 1`` (one input channel per  pruned
                filter)
``pointwise``   1×1 convs (ResNet projection shortcuts, inverted-residual        pruned
                expansions, ConvNeXt MLPs written as convs)
``other``       every other Conv/Linear weight                                  pruned
==============  ==============================================================  ==========

Not Conv/Linear weights, and not pruned by default: positional embeddings (parameters named
``*pos_embed*``/``*position*``; ``positional_embeddings=True`` prunes them) and the weights of
normalisation layers (``norm=True`` prunes them). Biases, class tokens, layer scales and the
rest are pruned only when an ``include`` pattern names them. ``include`` (added) and then
``exclude`` (removed) are :mod:`fnmatch` patterns over parameter names, e.g.
``exclude=("*.attn.qkv.weight",)``; a pattern that matches no parameter is an error, so a typo
never silently changes what is pruned.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from torch import nn

from prunekit.errors import PrunekitError
from prunekit.identity import noop_field

_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
_POSITIONAL = ("*pos_embed*", "*position*")
CATEGORIES: tuple[str, ...] = (
    "first", "classifier", "embedding", "attention", "depthwise", "pointwise", "other"
)


@attrs.frozen(kw_only=True)
class PrunableLayer:
    """One prunable weight tensor.

    ``kind`` is ``conv`` or ``linear`` for the weight of a Conv or Linear module and ``other``
    for a parameter added by the policy (a positional embedding, a norm weight, an ``include``
    pattern).
    """

    name: str  # parameter name, e.g. "stages.0.0.conv1.weight"
    module: str  # module name, e.g. "stages.0.0.conv1"
    kind: Literal["conv", "linear", "other"]
    shape: tuple[int, ...]
    index: int  # 0-based position in module order
    category: str = "other"

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _patterns(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class PrunablePolicy:
    """Which parameters to prune; the default prunes every Conv and Linear weight (see the
    module docstring for the categories, what each covers and the order of the rules)."""

    include_first: bool = True
    include_classifier: bool = True
    embeddings: bool = noop_field(True)
    attention: bool = noop_field(True)
    depthwise: bool = noop_field(True)
    pointwise: bool = noop_field(True)
    positional_embeddings: bool = noop_field(False)
    norm: bool = noop_field(False)
    include: tuple[str, ...] = noop_field((), converter=_patterns)
    exclude: tuple[str, ...] = noop_field((), converter=_patterns)

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (patterns as lists), for mask files and result records."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PrunablePolicy:
        """A policy from ``{field: value}`` (command line, suites); one line for a bad key."""
        fields = [f.name for f in attrs.fields(cls)]
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise PrunekitError(
                f"unknown prunable-parameter option(s) {', '.join(unknown)}; the options are: "
                f"{', '.join(fields)}"
            )
        for key, value in options.items():
            if key not in ("include", "exclude") and not isinstance(value, bool):
                raise PrunekitError(f"prunable-parameter option {key} must be true or false, got {value!r}")
        return cls(**dict(options))

    def keeps_category(self, category: str) -> bool:
        return {
            "first": self.include_first,
            "classifier": self.include_classifier,
            "embedding": self.embeddings,
            "attention": self.attention,
            "depthwise": self.depthwise,
            "pointwise": self.pointwise,
        }.get(category, True)


def _attention_prefixes(model: nn.Module) -> list[str]:
    out = []
    for name, module in model.named_modules():
        cls = type(module).__name__
        if isinstance(module, nn.MultiheadAttention) or "Attention" in cls or "Attn" in cls:
            out.append(f"{name}." if name else "")
    return out


def _categories(
    module_name: str, module: nn.Module, position: int, classifier: int | None, attention: list[str]
) -> list[str]:
    """Every category of a Conv/Linear weight, most specific first (``other`` when none)."""
    out = []
    if position == 0:
        out.append("first")
    if position == classifier:
        out.append("classifier")
    if any("stem" in p or "patch_embed" in p for p in module_name.split(".")):
        out.append("embedding")
    if any(module_name.startswith(prefix) for prefix in attention):
        out.append("attention")
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if module.groups > 1 and module.groups == module.in_channels:
            out.append("depthwise")
        elif all(k == 1 for k in module.kernel_size):
            out.append("pointwise")
    return out or ["other"]


def prunable_layers(model: nn.Module, policy: PrunablePolicy | None = None) -> list[PrunableLayer]:
    """The prunable parameters of ``model`` in parameter order, chosen by ``policy``.

    The classifier is the last Linear module in registration order; the first layer is the first
    Conv/Linear module. Modules reached twice (shared) are listed once.
    """
    policy = policy or PrunablePolicy()
    modules = dict(model.named_modules())
    params = list(model.named_parameters())  # deduplicated, in module registration order
    owner = {n: n.rpartition(".")[0] for n, _ in params}
    weights = [
        n for n, p in params
        if n.rpartition(".")[2] == "weight" and isinstance(modules[owner[n]], _PRUNABLE_TYPES)
    ]
    if not weights and not policy.include:
        raise PrunekitError(
            f"{type(model).__name__} has no prunable parameters (no Conv or Linear weights); "
            "prunekit prunes the weights of Conv and Linear modules (or name parameters to "
            "prune with an include pattern)"
        )
    linear = [i for i, n in enumerate(weights) if isinstance(modules[owner[n]], nn.Linear)]
    classifier = linear[-1] if linear else None
    attention = _attention_prefixes(model)
    chosen: dict[str, str] = {}  # parameter name -> category
    for i, n in enumerate(weights):
        categories = _categories(owner[n], modules[owner[n]], i, classifier, attention)
        if all(policy.keeps_category(c) for c in categories):
            chosen[n] = categories[0]
    for n, _ in params:
        if n in chosen or n in weights:
            continue
        if policy.positional_embeddings and any(fnmatch.fnmatchcase(n, pat) for pat in _POSITIONAL):
            chosen[n] = "positional"
        elif policy.norm and n.endswith("weight") and isinstance(modules[owner[n]], _NORM_TYPES):
            chosen[n] = "norm"
    names = [n for n, _ in params]
    for label, patterns in (("include", policy.include), ("exclude", policy.exclude)):
        for pattern in patterns:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                sample = ", ".join(weights[:3] or names[:3])
                raise PrunekitError(
                    f"prunable {label} pattern {pattern!r} matches no parameter of "
                    f"{type(model).__name__}; parameter names look like {sample}"
                )
            for n in hits:
                if label == "include":
                    chosen.setdefault(n, "included")
                else:
                    chosen.pop(n, None)
    if not chosen:
        raise PrunekitError(
            f"the prunable-parameter policy leaves no parameter of {type(model).__name__} to prune; "
            "include more categories or patterns"
        )
    shapes = dict(params)
    layers: list[PrunableLayer] = []
    for n in names:
        if n not in chosen:
            continue
        module = modules[owner[n]]
        is_weight = n in weights
        kind: Literal["conv", "linear", "other"] = (
            ("linear" if isinstance(module, nn.Linear) else "conv") if is_weight else "other"
        )
        layers.append(
            PrunableLayer(
                name=n,
                module=owner[n],
                kind=kind,
                shape=tuple(shapes[n].shape),
                index=len(layers),
                category=chosen[n],
            )
        )
    return layers


def total_prunable(layers: list[PrunableLayer]) -> int:
    return sum(layer.numel for layer in layers)
