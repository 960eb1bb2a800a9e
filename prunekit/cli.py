"""The ``prunekit`` command. User errors print one line and exit non-zero, never a traceback.

Output fits where it goes (:mod:`prunekit.console`): rich tables and live progress on a
terminal; plain, untruncated lines when stdout is a pipe or a file; no colour with
``NO_COLOR`` or ``--no-color``; ``--json`` for machines. ``--help``, ``--version`` and shell
completion of commands load neither plugins nor torch: the built-in commands that need heavy
modules import them when they run, and plugin commands are added only when a command that is
not built in is asked for (:class:`PrunekitGroup`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from prunekit import __version__
from prunekit.completion import complete_models, complete_names
from prunekit.defaults import DEFAULT_TRAINER
from prunekit.errors import PluginError, PrunekitError
from prunekit.kinds import BY_NAME
from prunekit.kinds import kind as find_kind
from prunekit.plugins import PluginInfo, get_plugins, reset_plugins
from prunekit.sentinels import CLEAN_CHECK
from prunekit.validate import check_composition, resolve_device

if TYPE_CHECKING:
    import torch

def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _emit_json(value: Any) -> None:
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


def _set_plugins_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--plugins-dir: load every *.py file of DIR as a plugin (sets PRUNEKIT_PLUGINS_DIR)."""
    if value is None or ctx.resilient_parsing:
        return
    os.environ["PRUNEKIT_PLUGINS_DIR"] = value
    reset_plugins()  # the commands of the plugins in DIR are added when they are asked for


def _set_strict(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--strict-plugins: any plugin problem is an error (sets PRUNEKIT_STRICT_PLUGINS)."""
    if not value or ctx.resilient_parsing:
        return
    os.environ["PRUNEKIT_STRICT_PLUGINS"] = "1"
    reset_plugins()


def _set_no_color(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--no-color: no colour anywhere in this process (sets NO_COLOR, which rich honours)."""
    if value:
        os.environ["NO_COLOR"] = "1"
        ctx.color = False


# built-in commands defined in other modules, imported when they run: name -> (module, short help)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("prunekit.bench.command_bench", "Run a benchmark suite: prune, check, train, store, rank and report."),
    "report": ("prunekit.bench.command_report", "Regenerate reports and plots from the results store."),
}


# built-in commands that use no plugin: they run without loading any (fast, and unaffected by
# a broken plugin)
PLUGIN_FREE_COMMANDS = ("status", "completion")


class PrunekitGroup(click.Group):
    """The ``prunekit`` group: built-in commands of other modules load when they are used, and
    plugin commands (hook ``register_commands``) are added only when a name that is not built
    in is asked for, or when a command runs. ``--help``, ``--version`` and completion of command
    names therefore load no plugin, no torch and no timm."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name in LAZY_COMMANDS:
            module = importlib.import_module(LAZY_COMMANDS[cmd_name][0])
            command: click.Command = getattr(module, cmd_name)
            self.add_command(command, cmd_name)
            _COMMAND_OWNERS[cmd_name] = "prunekit"
            return command
        if ctx.resilient_parsing:  # completing: plugins are not loaded for that
            return None
        _add_plugin_commands()
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["prunekit.help"] = any(a in ("--help", "-h") for a in rest)  # help loads no plugins
        return name, command, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, without importing the lazy commands."""
        limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, LAZY_COMMANDS[name][1]))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=PrunekitGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Plugins may add commands: `prunekit plugins` lists what each plugin adds.",
)
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
    "--no-color",
    is_flag=True,
    callback=_set_no_color,
    expose_value=False,
    is_eager=True,
    help="No colour in any output (same as NO_COLOR=1).",
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
    Output is plain text when stdout is not a terminal; NO_COLOR or --no-color turn colour off.
    """
    from prunekit.console import colour_off

    if colour_off():
        ctx.color = False
    if ctx.invoked_subcommand in PLUGIN_FREE_COMMANDS or ctx.meta.get("prunekit.help"):
        return
    loaded = get_plugins()  # strict mode raises here: one line, exit 1
    _add_plugin_commands()  # their problems are reported with the plugins' own
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
    kinds = [find_kind(kind).name] if kind else list(BY_NAME)
    rows = [
        {"kind": k, "name": e.name, "description": e.description, "plugin": str(e.origin)}
        for k in kinds
        for e in loaded.registry(k).entries()
    ]
    if as_json:
        _emit_json(rows)
        return
    from prunekit.console import print_table

    columns = ("kind", "name", "description", "plugin")
    print_table(columns, [[row[c] for c in columns] for row in rows], whole=("kind", "name"))


# -------------------------------------------------------------------------- prune / train
def _data_options(f: Any) -> Any:
    f = click.option("--download", is_flag=True, help="Allow torchvision to download the dataset.")(f)
    f = click.option("--data-root", type=click.Path(file_okay=False), default=None, help="Where datasets live.")(f)
    f = click.option("--dataset", default="digits", show_default=True, shell_complete=complete_names("dataset"), help="Dataset name (`prunekit list datasets`).")(f)
    f = click.option("--model", default=None, shell_complete=complete_models, help="timm model name; default: the dataset's own suggestion.")(f)
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
    import attrs

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


def _save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any] | None = None) -> None:
    """The model's state as safetensors, written atomically, with ``metadata`` (JSON values)."""
    from safetensors.torch import save_file

    from prunekit.atomic import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta or None)


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
            report = Progress(lambda record: bar.advance(1, _epoch_text(record)))
            return self.inner.fit(model, data, config, callbacks=[report, *callbacks], **kwargs)


def _epoch_text(record: dict[str, float]) -> str:
    return (
        f"epoch {int(record['epoch'])}: test accuracy {record['test_accuracy']:.4f}, "
        f"train loss {record['train_loss']:.4f}"
    )


COMPOSITION_FLAGS = ("scorer", "schedule")  # flags that compose a method of their own


@cli.command()
@_data_options
@click.option("--method", default=None, shell_complete=complete_names("method"), help="A named method (`prunekit list methods`).")
@click.option("--scorer", default=None, shell_complete=complete_names("scorer"), help="Compose a method: scorer name (not with --method).")
@click.option("--schedule", default=None, shell_complete=complete_names("ratio_schedule"), help="Compose a method: ratio schedule name (not with --method).")
@click.option("--rounds", type=int, default=None, help="Scoring rounds (exponential schedule).")
@click.option("--scorer-option", multiple=True, help="key=value option of the scorer.")
@click.option("--schedule-option", multiple=True, help="key=value option of the schedule.")
@click.option("--sparsity", type=float, required=True, help="Fraction of prunable weights removed, in [0, 1).")
@_model_options
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
    model_name = _model_name(model, dataset)
    data = pipeline.load_dataset(dataset, data_root, download=download)
    net = pipeline.build_model(model_name, data, seed, model_options)
    training = None
    if recipe.pretrain:
        retrains = len(pipeline.density_steps(recipe, 1.0 - sparsity)) - 1
        training = pipeline.Training(
            trainer=_ReportingTrainer(  # type: ignore[arg-type]  # a Trainer by delegation
                pipeline.instantiate("trainer", trainer), retrains, enabled=not as_json
            ),
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


@cli.command()
@_data_options
@click.option("--masks", "masks_path", type=click.Path(dir_okay=False), default=None, help="Mask file from `prunekit prune`; none trains dense.")
@click.option("--trainer", default=DEFAULT_TRAINER, show_default=True, shell_complete=complete_names("trainer"))
@click.option("--epochs", type=int, default=None, help="Default: the dataset's protocol.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--weight-decay", type=float, default=None)
@click.option("--lr-schedule", type=click.Choice(["multistep", "cosine", "constant"]), default=None)
@click.option("--optimizer", default=None, help="An optimizer the trainer offers (sgd trainer: sgd, adamw); default: the protocol's.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None, help="Training and evaluation precision (bf16/fp16 autocast, fp16 with a gradient scaler); default: the protocol's (fp32).")
@_model_options
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
    config = _protocol(
        dataset, epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, lr_schedule=lr_schedule,
        optimizer=optimizer, precision=precision,
    )  # fmt: skip
    fit.validate(config)
    dev = resolve_device(device)
    model_name = _model_name(model, dataset)
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
        report = Progress(lambda r: bar.advance(1, _epoch_text(r)))
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
        _save_weights(
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
        _emit_json(summary)
    else:
        saved = f"; weights written to {out}" if out is not None else ""
        click.echo(
            f"{model_name} on {dataset} (seed {seed}, sparsity {summary['sparsity']:.4f}): final test accuracy "
            f"{result.final_accuracy:.4f}, best {result.best_accuracy:.4f} "
            f"({config.epochs} epochs, {result.wall_time:.1f} s){saved}"
        )


# --------------------------------------------------------------------------------- status
@cli.command()
@click.option("--db", type=click.Path(dir_okay=False), default="prunekit-results.db", show_default=True, help="The results store a bench writes (`prunekit bench --db`).")
@click.option("--bench", "bench_id", default=None, help="Only this bench id (default: every bench with cells left, else the latest).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(db: str, bench_id: str | None, as_json: bool) -> None:
    """What a running or interrupted bench has done, is doing and has left, with its ETA.

    Read from the store alone, read-only (its bytes never change), so it can watch a bench that
    another process, or another machine sharing the file, is running.
    """
    from prunekit.bench.status import lines, read_status

    found = read_status(db, bench_id)
    if as_json:
        _emit_json(found.as_dict())
        return
    click.echo("\n".join(lines(found)))


# ----------------------------------------------------------------------------- completion
@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(prunekit completion bash)".

    It completes commands and options, and the names of methods, checks, scorers, schedules,
    trainers, datasets, suites and models.
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - click knows the three
        raise PrunekitError(f"no completion for {shell}")
    click.echo(cls(cli, {}, "prunekit", "_PRUNEKIT_COMPLETE").source())


# --------------------------------------------------------------------------- plugin commands
_COMMAND_OWNERS: dict[str, str] = {}  # command name -> the plugin that added it ("prunekit": built in)
_COMMAND_PROBLEMS: dict[str, list[str]] = {}  # plugin name -> what went wrong adding its commands
_COMMANDS_ADDED_FOR: list[object] = []  # the plugins whose commands are in the group (the last load)


def _add_plugin_commands() -> None:
    """Let plugins add commands, once per load of the plugins. A plugin may not replace a
    command it does not own (a built-in, loaded or not, or another plugin's): the original
    stays, and the attempt is a plugin problem."""
    loaded = get_plugins()
    if _COMMANDS_ADDED_FOR and _COMMANDS_ADDED_FOR[0] is loaded:
        _merge_command_problems(loaded.info)
        return
    _COMMANDS_ADDED_FOR[:] = [loaded]
    for name in [*cli.commands, *LAZY_COMMANDS]:
        _COMMAND_OWNERS.setdefault(name, "prunekit")
    for impl in loaded.manager.hook.register_commands.get_hookimpls():
        plugin = impl.plugin_name
        problems = _COMMAND_PROBLEMS.setdefault(plugin, [])
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - a broken plugin must not break the CLI
            text = f"it called sys.exit({err.code!r})" if isinstance(err, SystemExit) else f"{type(err).__name__}: {err}"
            _note(problems, f"hook register_commands raised {text}")
        for name, command in list(cli.commands.items()):
            owner = _COMMAND_OWNERS.setdefault(name, plugin)
            if command is not before.get(name) and owner != plugin:
                _note(problems, f"tried to replace the command {name!r} of {owner}; give its command another name")
                if name not in before:  # a built-in not loaded yet: it loads when asked for
                    del cli.commands[name]
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
    except Exception as err:
        if debug:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        _fail(
            f"unexpected {type(err).__name__}{': ' + first if first else ''}; "
            "run again with --debug for the traceback, and report it if it is prunekit's fault"
        )


if __name__ == "__main__":
    main()
