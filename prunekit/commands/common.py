"""What the commands share: JSON output, ``key=value`` options, the flags and protocol of
``prune`` and ``train``, weights files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from prunekit.completion import complete_models, complete_names
from prunekit.errors import PrunekitError
from prunekit.plugins import get_plugins

if TYPE_CHECKING:
    import torch


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


MAX_SEED = 2**63 - 1  # torch.manual_seed's range


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as JSON when they can be (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PrunekitError(f"option {pair!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def data_options(f: Any) -> Any:
    f = click.option("--download", is_flag=True, help="Allow torchvision to download the dataset.")(f)
    f = click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Where datasets live.")(f)
    f = click.option("--dataset", default="digits", show_default=True, shell_complete=complete_names("dataset"), help="Dataset name (`prunekit list datasets`).")(f)
    f = click.option("--model", default=None, shell_complete=complete_models, help="timm model name; default: the dataset's own suggestion.")(f)
    f = click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Run seed, 0..2^63-1.")(f)
    f = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")(f)
    return f


def model_options_flag(f: Any) -> Any:
    return click.option(
        "--model-option",
        "model_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="Option of timm.create_model, repeatable: img_size=32, zero_init_last=false, drop_path_rate=0.",
    )(f)


def resolve_model_name(model: str | None, dataset: str) -> str:
    if model is not None:
        return model
    cls = get_plugins().registry("dataset").get(dataset)
    if getattr(cls, "default_model", None) is None:
        raise PrunekitError(f"dataset {dataset!r} suggests no model; pass --model")
    return str(cls.default_model)


def dataset_protocol(dataset: str, epochs: int | None = None, **overrides: Any) -> Any:
    """The dataset's training protocol (or the CIFAR one) with command-line overrides."""
    import attrs

    from prunekit.interfaces import TrainConfig

    dataset_cls = get_plugins().registry("dataset").get(dataset)
    config = getattr(dataset_cls, "default_protocol", None) or TrainConfig()
    changes = {k: v for k, v in {"epochs": epochs, **overrides}.items() if v is not None}
    try:
        return attrs.evolve(config, **changes)
    except ValueError as err:
        raise PrunekitError(f"bad training option: {err}") from None


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """The model's state as safetensors, written atomically, with ``metadata`` (JSON values)."""
    from safetensors.torch import save_file

    from prunekit.atomic import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta or None)


def epoch_text(record: dict[str, float]) -> str:
    return (
        f"epoch {int(record['epoch'])}: test accuracy {record['test_accuracy']:.4f}, "
        f"train loss {record['train_loss']:.4f}"
    )
