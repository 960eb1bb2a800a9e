"""The ``prunekit`` command. User errors print one line and exit non-zero, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import attrs
import click
import torch

from prunekit import __version__
from prunekit.errors import PluginError, PrunekitError
from prunekit.plugins import KINDS, PluginInfo, get_plugins, reset_plugins

KIND_ALIASES = {
    **{k: k for k in KINDS},
    **{f"{k}s": k for k in KINDS},
    "schedule": "ratio_schedule",
    "schedules": "ratio_schedule",
    "check": "sanity_check",
    "checks": "sanity_check",
}


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


MAX_SEED = 2**63 - 1  # torch.manual_seed's range


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a device; anything
    else, or a GPU that is not there, is one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PrunekitError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise PrunekitError(f"device {name!r} cannot train models here; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PrunekitError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PrunekitError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible; use cuda:0.."
            )
    return device


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


def _set_plugins_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--plugins-dir: load every *.py file of DIR as a plugin (sets PRUNEKIT_PLUGINS_DIR)."""
    if value is None or ctx.resilient_parsing:
        return
    os.environ["PRUNEKIT_PLUGINS_DIR"] = value
    reset_plugins()
    _add_plugin_commands()  # commands of the plugins in DIR


def _set_strict(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--strict-plugins: any plugin problem is an error (sets PRUNEKIT_STRICT_PLUGINS)."""
    if not value or ctx.resilient_parsing:
        return
    os.environ["PRUNEKIT_STRICT_PLUGINS"] = "1"
    reset_plugins()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prunekit")
@click.option(
    "--plugins-dir",
    type=click.Path(exists=True, file_okay=False),
    callback=_set_plugins_dir,
    expose_value=False,
    is_eager=True,
    help="Also load every *.py file of DIR as a plugin (same as PRUNEKIT_PLUGINS_DIR).",
)
@click.option(
    "--strict-plugins",
    is_flag=True,
    callback=_set_strict,
    expose_value=False,
    is_eager=True,
    help="Make any plugin problem an error (same as PRUNEKIT_STRICT_PLUGINS=1).",
)
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    help="Show the full traceback of an unexpected error (same as PRUNEKIT_DEBUG=1).",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """prunekit: pruning at initialization, sanity-checked and benchmarked.

    Plugins load from the entry-point group `prunekit`; PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD=1 loads
    only the built-in ones and PRUNEKIT_PLUGINS=a,b only those. `prunekit plugins` shows them.
    """
    loaded = get_plugins()  # strict mode raises here: one line, exit 1
    _merge_command_problems(loaded.info)
    if os.environ.get("PRUNEKIT_STRICT_PLUGINS", "") not in ("", "0") and loaded.problems:
        name, message = loaded.problems[0]
        raise PluginError(f"plugin {name}: {message} (strict mode: PRUNEKIT_STRICT_PLUGINS)")
    if ctx.invoked_subcommand != "plugins":  # that command shows the problems itself
        for info in loaded.info:
            for error in info.errors:
                click.echo(f"warning: plugin {info.name} ({_origin(info)}): {error}", err=True)
        if loaded.problems:
            click.echo(
                "warning: the other plugins work; `prunekit plugins` says how to fix this", err=True
            )


# ------------------------------------------------------------------------------ plugins
def _origin(info: PluginInfo) -> str:
    return f"{info.distribution} {info.version}".strip()


def _fix(info: PluginInfo) -> str | None:
    """What to do about a plugin's problems (None when it has none)."""
    if not info.errors:
        return None
    if info.builtin:
        return (
            "a built-in plugin failed: reinstall prunekit (pip install -e . in a checkout) "
            "and report it"
        )
    if info.distribution == "runtime":
        return "fix the object passed to prunekit.plugins.register_plugin"
    if info.distribution.startswith("file:"):
        path = info.distribution.removeprefix("file:")
        return (
            f"fix or remove {path} (loaded from the plugins folder: "
            "--plugins-dir / PRUNEKIT_PLUGINS_DIR)"
        )
    if info.distribution == "-":
        return "pass an existing folder to --plugins-dir / PRUNEKIT_PLUGINS_DIR"
    dist = info.distribution
    return (
        f"upgrade it (pip install -U {dist}) or remove it (pip uninstall {dist}); to skip "
        "it, name the plugins to load in PRUNEKIT_PLUGINS=a,b, or load none with "
        "PRUNEKIT_DISABLE_PLUGIN_AUTOLOAD=1"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Every plugin: name, distribution, version, hooks, what it registered, problems, fixes."""
    loaded = get_plugins()
    if as_json:
        _emit_json([{**p.as_dict(), "fix": _fix(p)} for p in loaded.info])
        return
    for p in loaded.info:
        kind = "built-in" if p.builtin else "third-party"
        click.echo(f"{click.style(p.name, bold=True)}  {_origin(p)}  ({kind})")
        click.echo(f"  hooks: {', '.join(p.hooks) or '-'}")
        for registered_kind, names in p.registered.items():
            click.echo(f"  {registered_kind}: {', '.join(names)}")
        for error in p.errors:
            click.echo(f"  problem: {error}")
        if p.errors:
            click.echo(f"  fix: {_fix(p)}")
    count = len(loaded.problems)
    summary = f"{count} problem(s): see above" if count else "no problems"
    click.echo(f"{len(loaded.info)} plugins, {summary}")


@cli.command("list")
@click.argument("kind", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(kind: str | None, as_json: bool) -> None:
    """Registered objects of one KIND (scorers, schedules, checks, methods, models, ...) or all."""
    loaded = get_plugins()
    if kind is not None and kind not in KIND_ALIASES:
        raise PrunekitError(f"unknown kind {kind!r}; kinds: {', '.join(sorted(KINDS))}")
    kinds = [KIND_ALIASES[kind]] if kind else list(KINDS)
    rows = [
        {"kind": k, "name": e.name, "description": e.description, "plugin": str(e.origin)}
        for k in kinds
        for e in loaded.registry(k).entries()
    ]
    if as_json:
        _emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("kind", "name", "description", "plugin"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["kind"], row["name"], row["description"], row["plugin"])
    Console().print(table)


# -------------------------------------------------------------------------- prune / train
def _data_options(f: Any) -> Any:
    f = click.option("--download", is_flag=True, help="Allow torchvision to download the dataset.")(f)
    f = click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Where datasets live.")(f)
    f = click.option("--dataset", default="digits", show_default=True, help="Dataset name (`prunekit list datasets`).")(f)
    f = click.option("--model", default=None, help="timm model name; default: the dataset's own suggestion.")(f)
    f = click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Run seed, 0..2^63-1.")(f)
    f = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")(f)
    return f


def _model_options(f: Any) -> Any:
    return click.option(
        "--model-option",
        "model_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="Option of timm.create_model, repeatable: img_size=32, zero_init_last=false, drop_path_rate=0.",
    )(f)


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


def _model_name(model: str | None, dataset: str) -> str:
    if model is not None:
        return model
    cls = get_plugins().registry("dataset").get(dataset)
    if getattr(cls, "default_model", None) is None:
        raise PrunekitError(f"dataset {dataset!r} suggests no model; pass --model")
    return str(cls.default_model)


def _protocol(dataset: str, epochs: int | None = None, **overrides: Any) -> Any:
    """The dataset's training protocol (or the CIFAR one) with command-line overrides."""
    from prunekit.interfaces import TrainConfig

    dataset_cls = get_plugins().registry("dataset").get(dataset)
    config = getattr(dataset_cls, "default_protocol", None) or TrainConfig()
    changes = {k: v for k, v in {"epochs": epochs, **overrides}.items() if v is not None}
    try:
        return attrs.evolve(config, **changes)
    except ValueError as err:
        raise PrunekitError(f"bad training option: {err}") from None


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


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    from prunekit.atomic import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


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


@cli.command()
@_data_options
@click.option("--method", default=None, help="A named method (`prunekit list methods`).")
@click.option("--scorer", default=None, help="Compose a method: scorer name.")
@click.option("--schedule", default=None, help="Compose a method: ratio schedule name.")
@click.option("--rounds", type=int, default=None, help="Scoring rounds (exponential schedule).")
@click.option("--scorer-option", multiple=True, help="key=value option of the scorer.")
@click.option("--schedule-option", multiple=True, help="key=value option of the schedule.")
@click.option("--sparsity", type=float, required=True, help="Fraction of prunable weights removed, in [0, 1).")
@_model_options
@_prunable_options
@click.option("--check", default="none", show_default=True, help="Sanity check (`prunekit list checks`).")
@click.option("--allow-collapse", is_flag=True, help="Allow layers with no surviving weight.")
@click.option("--trainer", default="sgd", show_default=True, help="Trainer for dense pre-training (lottery tickets).")
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
    """Prune a model and write its masks; print the per-layer densities."""
    from prunekit import pipeline
    from prunekit.dense import DenseCache
    from prunekit.diagnostics import effective_sparsity_or_reason, layer_table

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
    model_name = _model_name(model, dataset)
    data = pipeline.load_dataset(dataset, data_root, download=download)
    net = pipeline.build_model(model_name, data, seed, model_options)
    training = None
    if recipe.pretrain:
        training = pipeline.Training(
            trainer=pipeline.instantiate("trainer", trainer),
            config=_protocol(dataset, epochs),
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
        _save_weights(net, weights)
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
        _emit_json(summary)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{recipe.name} on {model_name} ({dataset}), sparsity {sparsity:g}")
    for col in ("#", "layer", "shape", "kept", "total", "density"):
        table.add_column(col, justify="right" if col != "layer" else "left")
    for i, row in enumerate(rows):
        table.add_row(str(i), row["name"], "×".join(map(str, row["shape"])), str(row["kept"]), str(row["total"]), f"{row['density']:.4f}")
    console = Console()
    console.print(table)
    eff_text = f"effective sparsity {effective:.4f}" if effective is not None else f"effective sparsity {not_computed}"
    console.print(
        f"kept {summary['kept']:,} of {summary['total']:,} prunable weights: sparsity "
        f"{summary['sparsity']:.4f}, {eff_text}; masks written to {path}"
    )


@cli.command()
@_data_options
@click.option("--masks", "masks_path", type=click.Path(dir_okay=False), default=None, help="Mask file from `prunekit prune`; none trains dense.")
@click.option("--trainer", default="sgd", show_default=True)
@click.option("--epochs", type=int, default=None, help="Default: the dataset's protocol.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--weight-decay", type=float, default=None)
@click.option("--lr-schedule", type=click.Choice(["multistep", "cosine", "constant"]), default=None)
@click.option("--optimizer", default=None, help="An optimizer the trainer offers (sgd trainer: sgd, adamw); default: the protocol's.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None, help="Training and evaluation precision (bf16/fp16 autocast, fp16 with a gradient scaler); default: the protocol's (fp32).")
@_model_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def train(
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
    as_json: bool,
) -> None:
    """Train a masked (or dense) model and print its test accuracy.

    The model is built with the model options recorded in the mask file, overridden by
    --model-option.
    """
    from prunekit import pipeline
    from prunekit.masks import Masks

    masks = None
    meta: dict[str, str] = {}
    if masks_path is not None:
        masks, meta = Masks.load(masks_path)
        model = model or meta.get("model")
    fit = pipeline.instantiate("trainer", trainer)
    config = _protocol(
        dataset, epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, lr_schedule=lr_schedule,
        optimizer=optimizer, precision=precision,
    )
    fit.validate(config)
    dev = resolve_device(device)
    model_name = _model_name(model, dataset)
    data = pipeline.load_dataset(dataset, data_root, download=download)
    model_options = {**_recorded_model_options(meta), **pipeline.parse_model_options(model_option)}
    net = pipeline.build_model(model_name, data, seed, model_options)
    if masks is not None:
        masks.check_fits(net, source=f"masks in {masks_path}")
        if meta.get("weights"):
            _load_weights(net, Path(masks_path).parent / meta["weights"])  # type: ignore[arg-type]
        masks.apply(net)

    from rich.progress import Progress

    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("training", total=config.epochs)

        def progress(record: dict[str, float]) -> None:
            bar.update(task, advance=1, description=f"epoch {int(record['epoch'])} acc {record['test_accuracy']:.4f}")

        result = fit.fit(net, data, config, masks=masks, seed=seed, device=dev, progress=progress)
    summary = {
        "model": model_name,
        "dataset": dataset,
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
    }
    if as_json:
        _emit_json(summary)
    else:
        click.echo(
            f"{model_name} on {dataset} (sparsity {summary['sparsity']:.4f}): final test accuracy "
            f"{result.final_accuracy:.4f}, best {result.best_accuracy:.4f} "
            f"({config.epochs} epochs, {result.wall_time:.1f} s)"
        )


from prunekit.bench.command_bench import bench  # noqa: E402
from prunekit.bench.command_report import report  # noqa: E402

cli.add_command(bench)
cli.add_command(report)


_COMMAND_OWNERS: dict[str, str] = {}  # command name -> the plugin that added it ("prunekit": built in)
_COMMAND_PROBLEMS: dict[str, list[str]] = {}  # plugin name -> what went wrong adding its commands


def _add_plugin_commands() -> None:
    """Let plugins add commands. A plugin may not replace a command it does not own (a
    built-in or another plugin's): the original stays, and the attempt is a plugin problem."""
    for name in cli.commands:
        _COMMAND_OWNERS.setdefault(name, "prunekit")
    loaded = get_plugins()
    for impl in loaded.manager.hook.register_commands.get_hookimpls():
        plugin = impl.plugin_name
        problems = _COMMAND_PROBLEMS.setdefault(plugin, [])
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except (Exception, SystemExit) as err:  # a broken plugin must not break the CLI
            text = f"it called sys.exit({err.code!r})" if isinstance(err, SystemExit) else f"{type(err).__name__}: {err}"
            _note(problems, f"hook register_commands raised {text}")
        for name, command in cli.commands.items():
            owner = _COMMAND_OWNERS.setdefault(name, plugin)
            if name in before and command is not before[name] and owner != plugin:
                _note(problems, f"tried to replace the command {name!r} of {owner}; give its command another name")
        for name, command in before.items():
            if _COMMAND_OWNERS.get(name) != plugin:
                cli.commands[name] = command  # the owner's command stays
        if not problems:
            del _COMMAND_PROBLEMS[plugin]
    _merge_command_problems(loaded.info)


def _note(problems: list[str], text: str) -> None:
    if text not in problems:
        problems.append(text)


def _merge_command_problems(infos: list[PluginInfo]) -> None:
    """Add the command problems to the plugins' own (so `prunekit plugins` lists them)."""
    for info in infos:
        for text in _COMMAND_PROBLEMS.get(info.name, []):
            if text not in info.errors:
                info.errors.append(text)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one line and a non-zero exit.

    User errors (:class:`PrunekitError`, bad options, files that cannot be read or written)
    print what is wrong and what to do; an unexpected exception prints its one-line summary and
    a pointer to ``--debug`` (or ``PRUNEKIT_DEBUG=1``), which shows the full traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("PRUNEKIT_DEBUG", "") not in ("", "0")
    try:
        _add_plugin_commands()
        cli.main(args=args, prog_name="prunekit", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.format_message())
        sys.exit(err.exit_code)
    except click.ClickException as err:
        _fail(f"{err.format_message()} (see `prunekit --help`)", err.exit_code)
    except PrunekitError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as err:
        if debug:
            raise
        where = f" {err.filename}" if err.filename else ""
        _fail(f"cannot use{where}: {err.strerror or err}; check the path and its permissions")
    except Exception as err:  # noqa: BLE001 - the last boundary: one line, never a traceback
        if debug:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        _fail(
            f"unexpected {type(err).__name__}{': ' + first if first else ''}; "
            "run again with --debug for the traceback, and report it if it is prunekit's fault"
        )


if __name__ == "__main__":
    main()
