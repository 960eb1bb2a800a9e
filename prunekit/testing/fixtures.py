"""What every contract of the conformance kit shares: :class:`ConformanceError` and the
message helpers, the kit's tiny models and data, and looking up the object under test.

The names here are the kit's own building blocks; plugin authors use the ``check_*``
functions and ``tiny_*`` builders re-exported by :mod:`prunekit.testing`.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar, cast

import torch
from torch import nn

from prunekit.data import ArrayData, DataBundle, channel_stats, make_generator
from prunekit.errors import PrunekitError
from prunekit.kinds import BY_NAME
from prunekit.layers import PrunableLayer
from prunekit.masks import Masks
from prunekit.plugins import get_plugins

F = TypeVar("F", bound=Callable[..., Any])

IMAGE_SHAPE: tuple[int, int, int] = (1, 8, 8)
NUM_CLASSES = 3


class ConformanceError(AssertionError):
    """A plugin object breaks the contract; the message says what, where and what was expected."""


def make_error(subject: str, problem: str, expected: str, hint: str = "") -> ConformanceError:
    message = f"{subject}: {problem}; expected {expected}"
    return ConformanceError(f"{message}. {hint}" if hint else message)


def fail(subject: str, problem: str, expected: str, hint: str = "") -> NoReturn:
    raise make_error(subject, problem, expected, hint)


def tiny_convnet(
    seed: int = 0, dtype: torch.dtype = torch.float32, num_classes: int = NUM_CLASSES
) -> nn.Module:
    """conv1(1→4) · bn1 · relu · conv2(4→6, no bias) · bn2 · relu · pool · fc(6→classes).

    BatchNorm running statistics start away from their defaults, so eval mode uses them.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(1, 4, 3, padding=1),
                bn1=nn.BatchNorm2d(4),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(4, 6, 3, padding=1, bias=False),
                bn2=nn.BatchNorm2d(6),
                relu2=nn.ReLU(),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(6, num_classes),
            )
        )
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name.endswith("running_mean"):
                    buffer.uniform_(-0.1, 0.1)
                elif name.endswith("running_var"):
                    buffer.uniform_(0.8, 1.2)
    return model.to(dtype)


def tiny_mlp(
    seed: int = 0, dtype: torch.dtype = torch.float32, num_classes: int = NUM_CLASSES
) -> nn.Module:
    """flatten · fc1(64→16) · relu · fc2(16→12) · relu · fc3(12→classes)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(math.prod(IMAGE_SHAPE), 16),
                relu1=nn.ReLU(),
                fc2=nn.Linear(16, 12),
                relu2=nn.ReLU(),
                fc3=nn.Linear(12, num_classes),
            )
        )
    return model.to(dtype)


def tiny_data(seed: int = 0, per_class: int = 16) -> DataBundle:
    """3 classes of 8×8 grey images (a mean pattern per class plus noise), ``per_class`` train
    images and 4 test images per class, uint8 like every prunekit dataset."""
    g = make_generator(seed, "prunekit.testing.data")
    patterns = 127.5 + 60.0 * torch.randn((NUM_CLASSES, *IMAGE_SHAPE), generator=g)

    def split(n: int) -> ArrayData:
        y = (torch.arange(n * NUM_CLASSES) % NUM_CLASSES)[
            torch.randperm(n * NUM_CLASSES, generator=g)
        ]
        x = patterns[y] + 30.0 * torch.randn((len(y), *IMAGE_SHAPE), generator=g)
        return ArrayData(x=x.clamp(0, 255).round().to(torch.uint8), y=y)

    train = split(per_class)
    mean, std = channel_stats(train.x)
    return DataBundle(
        name="prunekit_testing",
        train=train,
        test=split(4),
        num_classes=NUM_CLASSES,
        mean=mean,
        std=std,
    )


def single_threaded(fn: F) -> F:
    """Run a check with one intra-op thread: the kit's models are tiny, and thread start-up and
    contention would cost far more than they save (then restore the caller's setting)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return cast(F, wrapper)


def kit_devices() -> list[torch.device]:
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

# ------------------------------------------------------------------------ name -> object
def resolve(kind: str, name_or_cls: Any, options: Mapping[str, Any]) -> tuple[str, Any]:
    """(subject for messages, instance) of a registered name, a class or an instance."""
    label = BY_NAME[kind].label
    interface = BY_NAME[kind].interface_class()
    assert interface is not None, f"{kind} objects are names, not classes"
    registered: str | None = None
    if isinstance(name_or_cls, str):
        registered = name_or_cls
        try:
            obj = get_plugins().registry(kind).get(name_or_cls)
        except PrunekitError as err:
            raise ConformanceError(
                f"{label} {name_or_cls!r} is not registered: {err}. Is the plugin installed "
                "(pip install -e .) and loaded? `prunekit plugins` shows every plugin and its "
                "problems"
            ) from None
    else:
        obj = name_or_cls
    cls = obj if isinstance(obj, type) else type(obj)
    shown = registered or getattr(cls, "name", None) or cls.__name__
    subject = f"{label} {shown!r}"
    if not issubclass(cls, interface):
        fail(
            subject,
            f"{cls.__module__}.{cls.__qualname__} is not a {interface.__name__}",
            f"a subclass of prunekit.interfaces.{interface.__name__}",
        )
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        fail(
            subject, f"its name is {name!r}", "a class variable `name: ClassVar[str]`, snake_case"
        )
    if registered is not None and name != registered:
        fail(
            subject,
            f"it is registered as {registered!r} but its class says name = {name!r}",
            "the same name in both places (results and reports use the class's name)",
        )
    description = getattr(obj, "description", None)
    if not isinstance(description, str) or not description.strip():
        fail(
            subject,
            f"its description is {description!r}",
            "a one-line `description: ClassVar[str]`",
        )
    if not isinstance(obj, type):
        if options:
            fail(
                subject,
                "options were given with an instance",
                "a registered name or a class when passing options",
            )
        return subject, obj
    try:
        cls()
    except Exception as err:
        raise make_error(
            subject,
            f"it cannot be built without options ({type(err).__name__}: {err})",
            "every option to have a default, so the name alone works on the command line",
            "Make options keyword-only attrs fields with defaults.",
        ) from err
    try:
        return subject, cls(**options)
    except Exception as err:
        raise make_error(
            subject,
            f"it cannot be built with options {dict(options)} ({type(err).__name__}: {err})",
            "options that are fields of the class",
        ) from err


def call_plugin(subject: str, where: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ConformanceError:
        raise
    except Exception as err:
        hint = (
            " Scoring batches are float32 whatever the model's dtype: cast them "
            "(x.to(weight.dtype))."
            if "float64" in where
            else ""
        )
        raise ConformanceError(
            f"{subject} {where}: {getattr(fn, '__name__', 'it')}() raised "
            f"{type(err).__name__}: {err}; expected it to work on any model with Conv/Linear "
            f"layers (see the traceback above).{hint}"
        ) from err


def identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality (NaN equals NaN, -0.0 differs from 0.0), also dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
    if a.is_floating_point() or a.is_complex():
        return torch.equal(a.view(torch.uint8), b.view(torch.uint8))
    return torch.equal(a, b)


def layer_names(layers: Sequence[PrunableLayer]) -> str:
    return ", ".join(layer.name for layer in layers)

def random_half_masks(model: nn.Module, layers: Sequence[PrunableLayer], seed: int) -> Masks:
    g = make_generator(seed, "prunekit.testing.masks")
    out = {}
    for layer in layers:
        keep = torch.zeros(layer.numel, dtype=torch.bool)
        keep[torch.randperm(layer.numel, generator=g)[: layer.numel // 2]] = True
        out[layer.name] = keep.view(layer.shape)
    device = next(model.parameters()).device
    return Masks(out).to(device)

def max_change(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape or a.numel() == 0:
        return float("nan")
    return float((a.detach().cpu().double() - b.detach().cpu().double()).abs().max())

def differs(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return any(not identical(a[n], b[n]) for n in a)

def random_scores(
    layers: Sequence[PrunableLayer], seed: int, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    g = make_generator(seed, "prunekit.testing.scores")
    return {layer.name: torch.randn(layer.shape, generator=g, dtype=dtype) for layer in layers}
