"""Built-in models: the CIFAR and digits networks, registered into timm's model registry.

Importing this package registers every model with ``timm.models.register_model``, after which
``timm.create_model(name, num_classes=..., in_chans=...)`` builds it. The ``register_models`` hook
reports the names to prunekit. One module per family, in timm's layout:

* :mod:`.cifar_vgg` — ``cifar_vgg16_bn``, ``cifar_vgg19_bn``;
* :mod:`.cifar_resnet` — ``cifar_resnet20``, ``cifar_resnet32`` (2× width), ``cifar_resnet56``;
* :mod:`.small_cnn` — ``digits_cnn``, ``digits_mlp`` (scikit-learn's 8×8 digits).

None has pretrained weights; ``pretrained=True`` raises ``ValueError``.
"""

from __future__ import annotations

from timm.models import model_entrypoint

from prunekit import Register, hookimpl

from . import cifar_resnet, cifar_vgg, small_cnn

MODEL_NAMES: tuple[str, ...] = (
    "cifar_vgg16_bn",
    "cifar_vgg19_bn",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet56",
    "digits_cnn",
    "digits_mlp",
)

__all__ = ["MODEL_NAMES", "cifar_resnet", "cifar_vgg", "register_models", "small_cnn"]


@hookimpl
def register_models(register: Register) -> None:
    """Report the timm names of the built-in models, described by their entrypoints' docstrings."""
    for name in MODEL_NAMES:
        doc = (model_entrypoint(name).__doc__ or "").strip()
        register(name, description=doc.splitlines()[0] if doc else name)
