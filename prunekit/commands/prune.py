"""``prunekit prune``: masks for a model at a sparsity, with a method and a check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prunekit import __version__
from prunekit.commands.common import (
    data_options,
    dataset_protocol,
    emit_json,
    epoch_text,
    model_options_flag,
    parse_options,
    resolve_model_name,
    save_weights,
)
from prunekit.completion import complete_names
from prunekit.defaults import DEFAULT_TRAINER
from prunekit.sentinels import CLEAN_CHECK
from prunekit.validate import check_composition, resolve_device


def _prunable_options(f: Any) -> Any:
    f = click.option(
        "--prunable-option",
        multiple=True,
        metavar="KEY=VALUE",
        help="Prunable-parameter policy switch, repeatable: attention=false, depthwise=false, "
        "embeddings=false, pointwise=false, include_first=false, include_classifier=false, "
        "positional_embeddings=true, norm=true (user guide: prunable parameters).",
    )(f)
    f = click.option(
        "--prunable-exclude",
        multiple=True,
        metavar="PATTERN",
        help="Keep the parameters whose names match this glob dense, repeatable (e.g. '*.attn.qkv.weight').",
    )(f)
    f = click.option(
        "--prunable-include",
        multiple=True,
        metavar="PATTERN",
        help="Also prune the parameters whose names match this glob, repeatable (e.g. 'pos_embed').",
    )(f)
    return f


def _policy(options: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...]) -> Any:
    from prunekit.layers import PrunablePolicy
    from prunekit.pipeline import parse_model_options

    fields = parse_model_options(options)
    if include:
        fields["include"] = tuple(include)
    if exclude:
        fields["exclude"] = tuple(exclude)
    return PrunablePolicy.from_options(fields)


class _ReportingTrainer:
    """A trainer that reports each of its trainings on stderr (:func:`prunekit.console.progress`):
    the dense pre-training of a lottery ticket, then each retraining of an IMP round. Everything
    else (its name, which keys the dense cache) is the wrapped trainer's."""

    def __init__(self, inner: Any, rounds: int, enabled: bool) -> None:
        self.inner, self.rounds, self.enabled = inner, rounds, enabled
        self.round = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def fit(self, model: Any, data: Any, config: Any, **kwargs: Any) -> Any:
        from prunekit.callbacks import Progress
        from prunekit.console import progress

        if kwargs.get("masks") is None:
            title = "dense pre-training"
        else:
            self.round += 1
            title = f"IMP round {self.round}/{self.rounds}, retraining"
        callbacks = kwargs.pop("callbacks", ())
        with progress(title, config.epochs, unit="epochs", enabled=self.enabled) as bar:
            report = Progress(lambda record: bar.advance(1, epoch_text(record)))
            return self.inner.fit(model, data, config, callbacks=[report, *callbacks], **kwargs)


@click.command()
@data_options
@click.option("--method", default=None, shell_complete=complete_names("method"), help="A named method (`prunekit list methods`).")
@click.option("--scorer", default=None, shell_complete=complete_names("scorer"), help="Compose a method: scorer name (not with --method).")
@click.option("--schedule", default=None, shell_complete=complete_names("ratio_schedule"), help="Compose a method: ratio schedule name (not with --method).")
@click.option("--rounds", type=int, default=None, help="Scoring rounds (exponential schedule).")
@click.option("--scorer-option", multiple=True, help="key=value option of the scorer.")
@click.option("--schedule-option", multiple=True, help="key=value option of the schedule.")
@click.option("--sparsity", type=float, required=True, help="Fraction of prunable weights removed, in [0, 1).")
@model_options_flag
@_prunable_options
@click.option("--check", default=CLEAN_CHECK, show_default=True, shell_complete=complete_names("sanity_check"), help="Sanity check (`prunekit list checks`).")
@click.option("--allow-collapse", is_flag=True, help="Allow layers with no surviving weight.")
@click.option("--trainer", default=DEFAULT_TRAINER, show_default=True, shell_complete=complete_names("trainer"), help="Trainer for dense pre-training (lottery tickets).")
@click.option("--epochs", type=int, default=None, help="Dense pre-training epochs; default: the dataset's protocol.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=".prunekit-cache", show_default=True, help="Where dense pre-training runs are cached.")
@click.option("--out", type=click.Path(dir_okay=False), default="masks.safetensors", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def prune(
    model: str | None,
    dataset: str,
    data_root: str | None,
    download: bool,
    seed: int,
    device: str,
    method: str | None,
    scorer: str | None,
    schedule: str | None,
    rounds: int | None,
    scorer_option: tuple[str, ...],
    schedule_option: tuple[str, ...],
    sparsity: float,
    model_option: tuple[str, ...],
    prunable_include: tuple[str, ...],
    prunable_exclude: tuple[str, ...],
    prunable_option: tuple[str, ...],
    check: str,
    allow_collapse: bool,
    trainer: str,
    epochs: int | None,
    cache_dir: str,
    out: str,
    as_json: bool,
) -> None:
    """Prune a model and write its masks; print the per-layer densities.

    The mask file records what made it (method, seed, dataset, model and its options, and the
    ticket's weights when they are not the seed's initialisation), which `prunekit train
    --masks` uses. Dense pre-training and IMP rounds report their progress on stderr.
    """
    from prunekit import pipeline
    from prunekit.dense import DenseCache
    from prunekit.diagnostics import effective_sparsity_or_reason, layer_table

    check_composition(method, scorer=scorer, schedule=schedule)
    pipeline.check_sparsity(sparsity)
    model_options = pipeline.parse_model_options(model_option)
    policy = _policy(prunable_option, prunable_include, prunable_exclude)
    recipe = pipeline.resolve_method(
        method,
        scorer=scorer,
        schedule=schedule,
        rounds=rounds,
        scorer_options=parse_options(scorer_option),
        schedule_options=parse_options(schedule_option),
    )
    sanity = pipeline.resolve_check(check, recipe)
    dev = resolve_device(device)
    model_name = resolve_model_name(model, dataset)
    data = pipeline.load_dataset(dataset, data_root, download=download)
    net = pipeline.build_model(model_name, data, seed, model_options)
    training = None
    if recipe.pretrain:
        retrains = len(pipeline.density_steps(recipe, 1.0 - sparsity)) - 1
        training = pipeline.Training(
            trainer=_ReportingTrainer(  # type: ignore[arg-type]  # a Trainer by delegation
                pipeline.instantiate("trainer", trainer), retrains, enabled=not as_json
            ),
            config=dataset_protocol(dataset, epochs),
            model_name=model_name,
            dataset_key=dataset,
            model_options=model_options,
            cache=DenseCache(cache_dir),
            device=dev,
        )
    outcome = pipeline.prune(
        net,
        data,
        recipe,
        sparsity,
        seed=seed,
        check=sanity,
        device=dev,
        allow_collapse=allow_collapse,
        init_model=lambda s: pipeline.build_model(model_name, data, s, model_options),
        training=training,
        policy=policy,
    )
    rows = layer_table(outcome.layers, outcome.masks)
    effective, not_computed = effective_sparsity_or_reason(net, outcome.masks, data.input_shape)
    warnings = list(outcome.metadata.get("warnings", []))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    meta = {
        **outcome.metadata,
        "model_options": model_options,
        "effective_sparsity": effective,
        "diagnostics": {"effective_sparsity": not_computed} if not_computed else {},
        "model": model_name,
        "dataset": dataset,
        "num_classes": data.num_classes,
        "prunekit_version": __version__,
    }
    if recipe.pretrain or sanity is not None:
        # the ticket's weights are not the seed's initialisation: keep them for `prunekit train`
        weights = Path(out).with_suffix(".weights.safetensors")
        save_weights(net, weights)
        meta["weights"] = weights.name
    path = outcome.masks.save(out, meta)
    summary = {
        "masks": str(path),
        "model": model_name,
        "method": recipe.name,
        "check": check,
        "target_sparsity": sparsity,
        "sparsity": outcome.masks.sparsity(),
        "effective_sparsity": effective,
        "effective_sparsity_note": not_computed,
        "tie_fraction": outcome.metadata.get("tie_fraction", 0.0),
        "warnings": warnings,
        "model_options": model_options,
        "policy": outcome.metadata.get("policy"),
        "kept": outcome.masks.kept(),
        "total": outcome.masks.total(),
        "layers": rows,
    }
    if as_json:
        emit_json(summary)
        return
    from prunekit.console import console, print_table

    out_console = console()
    print_table(
        ("#", "layer", "shape", "kept", "total", "density"),
        [
            (i, row["name"], "×".join(map(str, row["shape"])), row["kept"], row["total"], f"{row['density']:.4f}")
            for i, row in enumerate(rows)
        ],
        title=f"{recipe.name} on {model_name} ({dataset}), sparsity {sparsity:g}",
        out=out_console,
        right=("#", "shape", "kept", "total", "density"),
    )
    eff_text = f"effective sparsity {effective:.4f}" if effective is not None else f"effective sparsity {not_computed}"
    out_console.print(
        f"kept {summary['kept']:,} of {summary['total']:,} prunable weights: sparsity "
        f"{summary['sparsity']:.4f}, {eff_text}; masks written to {path}",
        highlight=False,
    )
