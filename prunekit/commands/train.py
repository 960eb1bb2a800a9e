"""``prunekit train``: train a masked (or dense) model; the ticket a mask file describes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from prunekit import __version__
from prunekit.commands.common import (
    data_options,
    dataset_protocol,
    emit_json,
    epoch_text,
    model_options_flag,
    resolve_model_name,
    save_weights,
)
from prunekit.completion import complete_names
from prunekit.defaults import DEFAULT_TRAINER
from prunekit.errors import PrunekitError
from prunekit.validate import resolve_device

if TYPE_CHECKING:
    import torch


def _recorded_model_options(meta: dict[str, str]) -> dict[str, Any]:
    """The model options a mask file was made with ({} for files without them)."""
    raw = meta.get("model_options")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise PrunekitError(f"the mask file's model_options are not JSON: {raw[:80]!r}") from None
    if not isinstance(value, dict):
        raise PrunekitError(f"the mask file's model_options are not a table: {raw[:80]!r}")
    return value


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise PrunekitError(f"ticket weights {path} are missing; keep them beside their mask file")
    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as err:
        first = str(err).strip().splitlines()[0]
        raise PrunekitError(f"ticket weights {path} do not fit the model ({first})") from None


def _recorded(meta: dict[str, str], key: str) -> Any:
    """A value the mask file records (JSON-decoded where it is JSON), None when it has none."""
    raw = meta.get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _from_file(ctx: click.Context, option: str, given: Any, recorded: Any, masks_path: str) -> Any:
    """The value of ``--option`` for a ticket of ``masks_path``: the file's, unless the flag is
    given on the command line, where it must agree with the file (one line naming both)."""
    from click.core import ParameterSource

    if recorded is None:
        return given
    source = ctx.get_parameter_source(option)
    explicit = source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
    if explicit and given is not None and given != recorded:
        flag = "--" + option.replace("_", "-")
        raise PrunekitError(
            f"{flag} {given} disagrees with the mask file {masks_path}, made with {option} {recorded}; "
            f"leave {flag} out to train the ticket the file describes, or prune again with {flag} {given}"
        )
    return recorded


def _model_options_from_file(given: dict[str, Any], recorded: dict[str, Any], masks_path: str) -> dict[str, Any]:
    """The file's model options with those of --model-option added; an option the file records
    with another value is an error naming both."""
    for key, value in given.items():
        if key in recorded and recorded[key] != value:
            raise PrunekitError(
                f"--model-option {key}={json.dumps(value)} disagrees with the mask file {masks_path}, "
                f"made with {key}={json.dumps(recorded[key])}; leave it out or prune again with it"
            )
    return {**recorded, **given}


@click.command()
@data_options
@click.option("--masks", "masks_path", type=click.Path(dir_okay=False), default=None, help="Mask file from `prunekit prune`; none trains dense.")
@click.option("--trainer", default=DEFAULT_TRAINER, show_default=True, shell_complete=complete_names("trainer"))
@click.option("--epochs", type=int, default=None, help="Default: the dataset's protocol.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--weight-decay", type=float, default=None)
@click.option("--lr-schedule", type=click.Choice(["multistep", "cosine", "constant"]), default=None)
@click.option("--optimizer", default=None, help="An optimizer the trainer offers (sgd trainer: sgd, adamw); default: the protocol's.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None, help="Training and evaluation precision (bf16/fp16 autocast, fp16 with a gradient scaler); default: the protocol's (fp32).")
@model_options_flag
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Save the trained weights here (safetensors, written atomically, with what made them).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def train(
    ctx: click.Context,
    model: str | None,
    dataset: str,
    data_root: str | None,
    download: bool,
    seed: int,
    device: str,
    masks_path: str | None,
    trainer: str,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    weight_decay: float | None,
    lr_schedule: str | None,
    optimizer: str | None,
    precision: str | None,
    model_option: tuple[str, ...],
    out: str | None,
    as_json: bool,
) -> None:
    """Train a masked (or dense) model and print its test accuracy.

    With --masks, the ticket is the one the file describes: its model, dataset, seed, model
    options and weights (the seed's initialisation, or the weights saved beside it). --model,
    --dataset, --seed and --model-option default to the file's; one that disagrees with it is an
    error naming both values. --model-option may add options the file does not set. Epochs are
    reported on stderr as they finish.
    """
    from prunekit import pipeline
    from prunekit.callbacks import Progress
    from prunekit.console import progress
    from prunekit.masks import Masks
    from prunekit.validate import check_output_file

    masks = None
    meta: dict[str, str] = {}
    if masks_path is not None:
        masks, meta = Masks.load(masks_path)
        model = _from_file(ctx, "model", model, _recorded(meta, "model"), masks_path)
        dataset = _from_file(ctx, "dataset", dataset, _recorded(meta, "dataset"), masks_path)
        recorded_seed = _recorded(meta, "seed")
        seed = _from_file(ctx, "seed", seed, recorded_seed if isinstance(recorded_seed, int) else None, masks_path)
    if out is not None:
        check_output_file(out, "--out")
    fit = pipeline.instantiate("trainer", trainer)
    config = dataset_protocol(
        dataset, epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, lr_schedule=lr_schedule,
        optimizer=optimizer, precision=precision,
    )  # fmt: skip
    fit.validate(config)
    dev = resolve_device(device)
    model_name = resolve_model_name(model, dataset)
    data = pipeline.load_dataset(dataset, data_root, download=download)
    given_options = pipeline.parse_model_options(model_option)
    model_options = _model_options_from_file(given_options, _recorded_model_options(meta), str(masks_path))
    net = pipeline.build_model(model_name, data, seed, model_options)
    if masks is not None and masks_path is not None:  # masks come from a file
        masks.check_fits(net, source=f"masks in {masks_path}")
        weights = meta.get("weights")
        if weights:
            _load_weights(net, Path(masks_path).parent / weights)
        masks.apply(net)

    with progress(f"train {model_name}", config.epochs, unit="epochs", enabled=not as_json) as bar:
        report = Progress(lambda r: bar.advance(1, epoch_text(r)))
        result = fit.fit(net, data, config, masks=masks, seed=seed, device=dev, callbacks=[report])
    summary = {
        "model": model_name,
        "dataset": dataset,
        "seed": seed,
        "masks": masks_path,
        "model_options": model_options,
        "sparsity": masks.sparsity() if masks is not None else 0.0,
        "final_accuracy": result.final_accuracy,
        "best_accuracy": result.best_accuracy,
        "final_loss": result.final_loss,
        "epochs": config.epochs,
        "optimizer": config.optimizer,
        "precision": config.precision,
        "steps": result.steps,
        "wall_time_s": result.wall_time,
        "weights": None,
    }
    if out is not None:
        summary["weights"] = out
        save_weights(
            net,
            Path(out),
            {
                "format": "prunekit.weights/1",
                "model": model_name,
                "dataset": dataset,
                "seed": seed,
                "model_options": model_options,
                "masks": masks_path or "",
                "masks_hash": masks.content_hash() if masks is not None else "",
                "epochs": config.epochs,
                "final_accuracy": result.final_accuracy,
                "prunekit_version": __version__,
            },
        )
    if as_json:
        emit_json(summary)
    else:
        saved = f"; weights written to {out}" if out is not None else ""
        click.echo(
            f"{model_name} on {dataset} (seed {seed}, sparsity {summary['sparsity']:.4f}): final test accuracy "
            f"{result.final_accuracy:.4f}, best {result.best_accuracy:.4f} "
            f"({config.epochs} epochs, {result.wall_time:.1f} s){saved}"
        )
