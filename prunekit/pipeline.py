"""One pruning run: model -> [pre-train] -> score -> allocate -> select -> check -> rewind.

:func:`prune` turns a model, data and a :class:`~prunekit.interfaces.Method` into masks;
:func:`build_model`, :func:`load_dataset` and :func:`resolve_method` turn names into objects
with one-line errors for unknown names. Everything random is drawn from the run seed.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from prunekit import __version__
from prunekit.callbacks import Snapshots
from prunekit.data import ArrayData, DataBundle, make_generator, scoring_batches
from prunekit.defaults import DEFAULT_SCHEDULE
from prunekit.dense import DenseCache, DenseRun, rewind_step
from prunekit.errors import LayerCollapseError, PrunekitError, UnknownNameError
from prunekit.identity import canonical
from prunekit.interfaces import (
    Method,
    RatioSchedule,
    SanityCheck,
    Scorer,
    ScoringContext,
    TicketContext,
    TrainConfig,
    Trainer,
)
from prunekit.layers import PrunableLayer, PrunablePolicy, prunable_layers
from prunekit.masks import Masks
from prunekit.plugins import get_plugins
from prunekit.scoring import preserved, run_scorer
from prunekit.selection import (
    TieStats,
    check_scores,
    exclude_pruned,
    select_top_with_stats,
    zero_fraction,
)
from prunekit.sentinels import CLEAN_CHECK


# ------------------------------------------------------------------------- names -> objects
def instantiate(kind: str, name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The registered class ``name`` of ``kind`` (its name or a CLI word for it, as
    :func:`prunekit.names`) built with ``options``; an unknown name or bad options are one line."""
    cls = get_plugins().registry(kind).get(name)
    try:
        return cls(**dict(options or {}))
    except TypeError as err:
        fields = [f.name for f in attrs.fields(cls)] if attrs.has(cls) else []
        raise PrunekitError(
            f"bad options {dict(options or {})} for {kind.replace('_', ' ')} {name!r} ({err}); "
            f"its options are: {', '.join(fields) or 'none'}"
        ) from None
    except ValueError as err:
        raise PrunekitError(f"bad option for {kind.replace('_', ' ')} {name!r}: {err}") from None


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    options: Mapping[str, Any] | None = None,
) -> DataBundle:
    """The registered dataset ``name`` with its ``options`` (e.g. cifar10's normalization)."""
    dataset = instantiate("dataset", name, options)
    return dataset.load(Path(root).expanduser() if root is not None else None, download=download)


RESERVED_MODEL_OPTIONS = ("num_classes", "in_chans")


def parse_value(text: str) -> Any:
    """A ``key=value`` value: int, float, bool (true/false, any case), None (none/null), a
    JSON list or object, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    if text.strip()[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def parse_model_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings (``--model-option img_size=32``) as a dict of typed values."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PrunekitError(f"model option {pair!r} is not key=value, e.g. img_size=32")
        out[key] = parse_value(value)
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def _option_hint(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def build_model(
    name: str, data: DataBundle, seed: int, options: Mapping[str, Any] | None = None
) -> nn.Module:
    """A timm model for ``data`` (classes, input channels), initialised from ``seed``.

    ``options`` go to ``timm.create_model`` as keyword arguments (``img_size=32``,
    ``zero_init_last=False``, ``drop_path_rate=0``...). The model is checked with a forward
    pass of one sample of the data's shape, so that an input-size mismatch is a one-line error
    naming the option to set, before any work is done.
    """
    import timm

    options = dict(options or {})
    get_plugins()  # model plugins register into timm on import
    if not timm.is_model(name):
        import difflib

        known = timm.list_models()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(f"unknown model {name!r}; {hint}see `prunekit list model` or timm.list_models()")
    reserved = [k for k in RESERVED_MODEL_OPTIONS if k in options]
    if reserved:
        raise PrunekitError(
            f"model option {reserved[0]} is set by the dataset ({data.num_classes} classes, "
            f"{data.input_shape[0]} input channels); leave it out"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = timm.create_model(
                name, num_classes=data.num_classes, in_chans=data.input_shape[0], **options
            )
        except TypeError as err:
            bad = re.search(r"unexpected keyword argument '([^']+)'", str(err))
            if bad and options:
                raise PrunekitError(
                    f"model {name!r} has no option {bad.group(1)!r} (given: {_option_hint(options)}); "
                    "see the model's arguments in timm"
                ) from None
            raise PrunekitError(
                f"cannot build model {name!r} with options {{{_option_hint(options)}}}: {_first_line(err)}"
            ) from None
        except (ValueError, AssertionError, RuntimeError, KeyError, OSError) as err:
            given = f" with options {{{_option_hint(options)}}}" if options else ""
            raise PrunekitError(f"cannot build model {name!r}{given}: {_first_line(err)}") from None
        _check_input(model, name, data, options)
    return model


def _check_input(model: nn.Module, name: str, data: DataBundle, options: Mapping[str, Any]) -> None:
    """One sample through ``model`` (eval mode, no gradients, state unchanged) or one line
    saying which input the model expects and which option to set."""
    import inspect

    c, h, w = data.input_shape
    try:
        with preserved(model), torch.no_grad():
            model.eval()
            model(torch.zeros((1, c, h, w)))
    except Exception as err:  # noqa: BLE001 — any failure of the dry run is a mismatch to report in one line
        cfg = getattr(model, "pretrained_cfg", None) or {}
        expected = cfg.get("input_size") if isinstance(cfg, Mapping) else None
        takes_size = "img_size" in inspect.signature(type(model).__init__).parameters
        if expected and tuple(expected[1:]) != (h, w) and takes_size and "img_size" not in options:
            raise PrunekitError(
                f"{name} expects {expected[1]}x{expected[2]} input, the data has {h}x{w}: "
                f"pass --model-option img_size={h if h == w else [h, w]} (in a suite: "
                f"img_size = {h if h == w else [h, w]} in its [model] table)"
            ) from None
        default = f" (its default input is {expected[1]}x{expected[2]})" if expected else ""
        raise PrunekitError(
            f"{name} cannot run on {c}x{h}x{w} input{default}: {_first_line(err)}; pick a model "
            "for this input size or set the model option that sizes its input"
        ) from None


def resolve_method(
    name: str | None = None,
    *,
    scorer: str | None = None,
    schedule: str | None = None,
    rounds: int | None = None,
    scorer_options: Mapping[str, Any] | None = None,
    schedule_options: Mapping[str, Any] | None = None,
) -> Method:
    """A registered method, or one composed from a scorer and a schedule, with overrides."""
    if name is None and scorer is None:
        raise PrunekitError("give a method (--method) or a scorer (--scorer) to prune with")
    if name is not None:
        method = get_plugins().registry("method").get(name)
    else:
        method = Method(
            name=f"{scorer}+{schedule or DEFAULT_SCHEDULE}",
            description=f"{scorer} scores, {schedule or DEFAULT_SCHEDULE} budgets",
            family="initial",
            scorer=scorer,
        )
    changes: dict[str, Any] = {}
    if scorer is not None and name is not None:
        changes["scorer"] = scorer
    if schedule is not None:
        changes["schedule"] = schedule
    if rounds is not None:
        changes["rounds"] = rounds
    if scorer_options:
        changes["scorer_options"] = {**dict(method.scorer_options), **scorer_options}
    if schedule_options:
        changes["schedule_options"] = {**dict(method.schedule_options), **schedule_options}
    method = attrs.evolve(method, **changes) if changes else method
    plugins = get_plugins()
    if method.scorer is not None:
        plugins.registry("scorer").get(method.scorer)
        plugins.registry("ratio_schedule").get(method.schedule)
    return method


def check_sparsity(sparsity: float) -> float:
    if not 0.0 <= sparsity < 1.0:
        raise PrunekitError(f"sparsity must be in [0, 1), got {sparsity}; e.g. 0.9 keeps 10% of the weights")
    return float(sparsity)


def uses_data(method: Method) -> bool:
    """Whether the method's masks depend on the training data."""
    if method.pretrain:
        return True
    if method.scorer is None:
        return False
    return bool(get_plugins().registry("scorer").get(method.scorer).needs_data)


def resolve_check(name: str | None, method: Method, options: Mapping[str, Any] | None = None) -> SanityCheck | None:
    """The check ``name`` for ``method``; an error when it does not apply to it."""
    if name is None or name == CLEAN_CHECK:
        return None
    check = instantiate("sanity_check", name, options)
    reason = check.not_applicable(method, uses_data(method))
    if reason:
        raise PrunekitError(f"check {name!r} does not apply to method {method.name!r}: {reason}")
    return check


# ------------------------------------------------------------------------------- pruning
@attrs.frozen(kw_only=True, eq=False)
class PruneOutcome:
    masks: Masks
    layers: tuple[PrunableLayer, ...]
    metadata: dict[str, Any]
    # the prunable weights the ticket was cut from, before masking (empty when nothing was pruned)
    unpruned: Mapping[str, torch.Tensor] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True, eq=False)
class Training:
    """How to train, for methods that pre-train (lottery tickets) or retrain between rounds.

    ``model_name`` and ``dataset_key`` identify the dense run in the cache together with the
    protocol, the seed and the pruning-data check.
    """

    trainer: Trainer
    config: TrainConfig
    model_name: str
    dataset_key: str
    model_options: Mapping[str, Any] = attrs.field(factory=dict)
    cache: DenseCache = attrs.field(factory=DenseCache)
    device: torch.device = torch.device("cpu")


@attrs.frozen(kw_only=True, eq=False)
class PruneRun:
    """What one pruning run is: the model it prunes in place on ``device``, the data, the
    method, the prunable layers, the target density, the seed, the sanity check, and what
    rewinding (``init_model``) and pre-training (``training``) need.

    ``check_rng`` is the one generator every stage of the check draws from, in pipeline order
    (seeded from the seed and the check's name).
    """

    model: nn.Module
    data: DataBundle
    method: Method
    layers: tuple[PrunableLayer, ...]
    density: float
    seed: int
    device: torch.device
    check: SanityCheck | None = None
    init_model: Callable[[int], nn.Module] | None = None
    training: Training | None = None
    check_rng: torch.Generator = attrs.field(init=False)

    @check_rng.default
    def _check_rng(self) -> torch.Generator:
        return make_generator(self.seed, "check", self.check_name)

    @property
    def check_name(self) -> str:
        return self.check.name if self.check is not None else CLEAN_CHECK

    @property
    def stages(self) -> frozenset[str]:
        """The stages the check acts on (none without a check)."""
        return frozenset(self.check.stages) if self.check is not None else frozenset()

    @property
    def pruning_check(self) -> str:
        """The check that changes the pruning data (the clean one unless it acts there)."""
        return self.check_name if "pruning_data" in self.stages else CLEAN_CHECK

    def pruning_data(self) -> ArrayData:
        """The training data pruning sees: perturbed by a ``pruning_data`` check, else clean."""
        if self.check is None or "pruning_data" not in self.check.stages:
            return self.data.train
        return self.check.perturb_data(self.data.train, self.data.num_classes, self.check_rng)

    def perturbed_scores(
        self, scores: dict[str, torch.Tensor], masks: Masks, *, before_budgets: bool
    ) -> dict[str, torch.Tensor]:
        """``scores`` through a ``scores`` check that acts at this point (before the layer
        budgets or after them), pruned positions excluded again; else as they are."""
        check = self.check
        if check is None or "scores" not in check.stages or check.scores_before_budgets() != before_budgets:
            return scores
        return exclude_pruned(check.perturb_scores(scores, self.check_rng), masks)

    def perturbed_ticket(self, masks: Masks, unpruned: Mapping[str, torch.Tensor]) -> Masks:
        """The ticket through a ``ticket`` check (the model changed in place, the returned
        masks applied to it); ``masks`` as they are without one."""
        if self.check is None or "ticket" not in self.check.stages:
            return masks
        if self.init_model is None:
            raise PrunekitError(f"check {self.check_name!r} needs a way to re-initialise the model")
        ticket = TicketContext(
            model=self.model, masks=masks, unpruned=unpruned, generator=self.check_rng, init_model=self.init_model
        )
        masks = self.check.perturb_ticket(ticket)
        masks.apply(self.model)
        return masks


def dense_run(
    model: nn.Module,
    data: DataBundle,
    method: Method,
    training: Training,
    *,
    seed: int,
    pruning_train: ArrayData,
    check_name: str,
    check_options: Mapping[str, Any] | None = None,
    extra_steps: Iterable[int] = (),
) -> DenseRun:
    """The dense training of ``model`` (at θ₀) on the pruning data, with θ_k kept; cached.

    The cache key is everything that changes the training (the pruning-data check with its
    options included), not which states are kept: every method shares the run. It keeps θ₀,
    θ_k of ``method`` and of every registered late-rewinding method, so that the whole
    lottery-ticket family trains dense once whatever order its methods come in, and the states
    after ``extra_steps`` (an instrument's rewinding sweep).
    """
    steps_per_epoch = -(-len(pruning_train) // training.config.batch_size)
    total = steps_per_epoch * training.config.epochs
    k = rewind_step(method.rewind_point, total) if method.rewind == "step" else 0
    wanted = {0, k} | {
        rewind_step(m.rewind_point, total)
        for m in (e.obj for e in get_plugins().registry("method").entries())
        if m.pretrain and m.rewind == "step"
    } | {int(s) for s in extra_steps}
    spec = {
        "model": training.model_name,
        "data": training.dataset_key,
        "protocol": canonical(training.config),
        "trainer": training.trainer.name,
        "seed": seed,
        "pruning_data": check_name,
        "pruning_options": canonical(dict(check_options or {})),
        "version": __version__,
    }
    if training.model_options:  # left out while empty: earlier cache entries stay valid
        spec["model_options"] = canonical(dict(training.model_options))

    def compute(snapshot_steps: list[int]) -> DenseRun:
        start = {n: v.detach().clone() for n, v in model.state_dict().items()}
        result = training.trainer.fit(
            model,
            data,
            training.config,
            seed=seed,
            device=training.device,
            train_data=pruning_train,
            callbacks=[Snapshots(snapshot_steps)],
        )
        final = {n: v.detach().clone() for n, v in model.state_dict().items()}
        model.load_state_dict(start)
        states = {s: {n: v.cpu() for n, v in st.items()} for s, st in result.snapshots.items()}
        return DenseRun(
            states=states,
            final={n: v.cpu() for n, v in final.items()},
            steps=result.steps,
            final_accuracy=result.final_accuracy,
            best_accuracy=result.best_accuracy,
        )

    return training.cache.get_or_compute(spec, compute, snapshots=sorted(wanted))


def density_steps(method: Method, density: float) -> list[float]:
    """Target densities of successive prune-retrain rounds (IMP), ending at ``density``."""
    if method.prune_fraction <= 0:
        return [density]
    steps, d = [], 1.0
    while d * (1 - method.prune_fraction) > density + 1e-12:
        d *= 1 - method.prune_fraction
        steps.append(d)
    return [*steps, density]


def _score_and_select(run: PruneRun, selection: Selection, masks: Masks, density: float) -> Masks:
    """``run.method.rounds`` scoring rounds from the current masks' density down to ``density``.

    Ties at a layer's threshold are broken by a permutation seeded from the run's seed, the
    selection call, the round and the layer (see :mod:`prunekit.selection`);
    ``selection.log`` collects how much ties decided.
    """
    model, method, layers, log = run.model, run.method, run.layers, selection.log
    start = masks.density()
    for k in range(1, method.rounds + 1):
        target = start * (density / start) ** (k / method.rounds)
        masks.apply(model)
        ctx = ScoringContext(
            layers=layers,
            masks=masks,
            batches=selection.batches,
            input_shape=run.data.input_shape,
            num_classes=run.data.num_classes,
            seed=run.seed,
            device=run.device,
        )
        scores = _score(selection.scorer, model, ctx, method)
        check_scores(layers, scores, f"scorer {method.scorer!r}")
        zeros = zero_fraction(scores, layers, masks)
        scores = exclude_pruned(scores, masks)
        # the schedule allocates on perturbed scores, or budgets stay the clean ones
        scores = run.perturbed_scores(scores, masks, before_budgets=True)
        counts = selection.schedule.allocate(layers, target, scores)
        scores = run.perturbed_scores(scores, masks, before_budgets=False)
        masks, ties = select_top_with_stats(
            layers, scores, counts, generator=_tie_generator(run.seed, log.rounds, k)
        )
        log.add(ties, zeros)
    log.rounds += 1
    return masks


def _score(scorer: Scorer, model: nn.Module, ctx: ScoringContext, method: Method) -> dict[str, torch.Tensor]:
    """The scorer's scores, or one line saying why it cannot score this model (an op of the
    model that torch cannot differentiate as the scorer needs, e.g. GraSP's Hessian-gradient
    product through hard-sigmoid)."""
    before = state_checksums(model)
    try:
        scores = run_scorer(scorer, model, ctx)
    except (RuntimeError, NotImplementedError) as err:
        raise PrunekitError(
            f"scorer {method.scorer!r} cannot score {type(model).__name__}: {_first_line(err)}; "
            "use another method for this model"
        ) from None
    changed = [name for name, value in state_checksums(model).items() if before.get(name) != value]
    if changed:
        assert method.scorer is not None  # it has just scored
        origin = get_plugins().registry("scorer").entry(method.scorer).origin
        raise PrunekitError(
            f"scorer {method.scorer!r} ({origin}) changed the model's {changed[0]}"
            f"{f' and {len(changed) - 1} more tensors' if len(changed) > 1 else ''} while scoring; "
            "a scorer must leave the weights as it found them (score a copy), fix or remove the plugin"
        )
    return scores


@torch.no_grad()
def state_checksums(model: nn.Module) -> dict[str, tuple[int, int, str]]:
    """A checksum of every parameter and buffer, computed on its device: the sum of its bit
    patterns, the sum of each bit pattern XOR its predecessor's shifted left (an asymmetric
    mix, so a permutation, a reversal included, shows too), and its dtype/shape. Any change of a value, order, dtype or shape changes it (up to collisions
    of two 64-bit sums, which an accidental change does not produce)."""
    out = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        t = tensor.detach()
        width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(t.element_size())
        if width is None or t.is_complex():
            bits = t.reshape(-1).to(torch.float64).view(torch.int64)
        else:
            bits = t.contiguous().view(width).reshape(-1).to(torch.int64)
        total = int(bits.sum())
        mixed = int((bits[1:] ^ (bits[:-1] << 7)).sum()) if bits.numel() > 1 else 0
        out[name] = (total, mixed, f"{t.dtype}{tuple(t.shape)}")
    return out


def _tie_generator(seed: int, call: int, k: int) -> Callable[[PrunableLayer], torch.Generator]:
    """The tie-break stream of one layer in scoring round ``k`` of selection ``call``."""
    return lambda layer: make_generator(seed, "tie-break", call, k, layer.name)


TIE_WARNING = 0.1  # warn when more than this fraction of the kept weights was chosen by ties
ZERO_WARNING = 0.5  # warn when more than this fraction of the scores is exactly zero


@attrs.define
class SelectionLog:
    """How much ties decided over every scoring round of one pruning run (the largest round)."""

    tie_fraction: float = 0.0
    zero_fraction: float = 0.0
    rounds: int = 0

    def add(self, ties: TieStats, zeros: float) -> None:
        self.tie_fraction = max(self.tie_fraction, ties.fraction)
        self.zero_fraction = max(self.zero_fraction, zeros)

    def warnings(self, scorer: str | None, model: nn.Module) -> list[str]:
        """Human warnings for ``tie_fraction`` and ``zero_fraction`` (empty when neither is high)."""
        out = []
        if self.zero_fraction > ZERO_WARNING:
            out.append(
                f"{self.zero_fraction:.1%} of the {scorer} scores are exactly 0: the scorer "
                "cannot rank those weights"
            )
        if self.tie_fraction > TIE_WARNING:
            out.append(
                f"{self.tie_fraction:.1%} of the kept weights were chosen among tied {scorer} "
                "scores by the seeded tie-break, not by their scores"
            )
        if out and _zeroed_norms(model):
            out.append(
                "the model zero-initialises some normalisation layers (timm's zero_init_last), "
                "which zeroes the gradients of the residual branches: pass "
                "--model-option zero_init_last=false (a suite: zero_init_last = false in [model])"
            )
        return out


def _zeroed_norms(model: nn.Module) -> bool:
    """Whether some normalisation layer's weight is all zeros (zero-initialised residual)."""
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    return any(
        isinstance(m, norms) and isinstance(getattr(m, "weight", None), torch.Tensor) and not m.weight.any()
        for m in model.modules()
    )


@attrs.frozen(kw_only=True, eq=False)
class Selection:
    """How the scoring rounds of one run score and select: the method's scorer and schedule
    (built with its options), the scoring batches, and the log of what ties decided."""

    scorer: Scorer
    schedule: RatioSchedule
    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    log: SelectionLog = attrs.field(factory=SelectionLog)

    def record(self, run: PruneRun) -> dict[str, Any]:
        """What to record about the ties and zero scores of the run's selections."""
        return {
            "tie_fraction": self.log.tie_fraction,
            "zero_score_fraction": self.log.zero_fraction,
            "warnings": self.log.warnings(run.method.scorer, run.model),
        }


def _find_ticket(run: PruneRun, masks: Masks) -> tuple[Masks, dict[str, torch.Tensor], dict[str, Any]]:
    """Score, select and rewind: the ticket before any ticket check, with its unpruned
    weights and what to record about it."""
    model, data, method, seed, device = run.model, run.data, run.method, run.seed, run.device
    assert method.scorer is not None  # a method without a scorer keeps its dense masks
    scorer = instantiate("scorer", method.scorer, dict(method.scorer_options))
    schedule = instantiate("ratio_schedule", method.schedule, dict(method.schedule_options))
    meta: dict[str, Any] = {
        "scorer_options": attrs.asdict(scorer) if attrs.has(type(scorer)) else {},
        "schedule_options": attrs.asdict(schedule) if attrs.has(type(schedule)) else {},
    }
    pruning_train = run.pruning_data()
    batches = scoring_batches(
        data, scorer.data_request(model, data), seed, device, pruning_train, augment=method.scoring_augment
    )
    selection = Selection(scorer=scorer, schedule=schedule, batches=batches)
    names = [layer.name for layer in run.layers]
    if not method.pretrain:
        unpruned = _prunable_copy(model, names)
        masks = _score_and_select(run, selection, masks, run.density)
        meta.update(selection.record(run))
        masks.apply(model)
        return masks, unpruned, meta
    training = run.training
    if training is None:
        raise PrunekitError(f"method {method.name!r} trains the dense network first: give it a training protocol")
    check, pruning_check = run.check, run.pruning_check
    dense = dense_run(
        model, data, method, training, seed=seed, pruning_train=pruning_train, check_name=pruning_check,
        # options such as half_dataset's fraction change the data: part of the cache key
        check_options=canonical(check) if pruning_check != CLEAN_CHECK and attrs.has(type(check)) else None,
    )
    meta["dense_accuracy"] = dense.final_accuracy
    k = rewind_step(method.rewind_point, dense.steps) if method.rewind == "step" else 0
    trained = dense.final
    densities = density_steps(method, run.density)
    meta["round_densities"] = []
    for i, round_density in enumerate(densities):
        model.load_state_dict(trained)
        masks = _score_and_select(run, selection, masks, round_density)
        meta["round_densities"].append(masks.density())
        _rewind(run, dense, k, trained)
        unpruned = _prunable_copy(model, names)
        masks.apply(model)
        if i < len(densities) - 1:  # IMP: retrain the rewound ticket before the next round
            training.trainer.fit(
                model, data, training.config, masks=masks, seed=seed, device=device, train_data=pruning_train
            )
            trained = {n: v.detach().clone() for n, v in model.state_dict().items()}
    meta.update(selection.record(run))
    return masks, unpruned, meta


class TicketCache:
    """Tickets before their ticket check, kept in memory (least recently used first out), so
    the clean run and every ticket check of one (method, sparsity, seed) prune once."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any:
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        return None

    def put(self, key: str, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def prune(
    model: nn.Module,
    data: DataBundle,
    method: Method,
    sparsity: float,
    *,
    seed: int = 0,
    check: SanityCheck | None = None,
    device: torch.device | str = "cpu",
    policy: PrunablePolicy | None = None,
    allow_collapse: bool = False,
    init_model: Callable[[int], nn.Module] | None = None,
    training: Training | None = None,
    reuse: TicketCache | None = None,
    reuse_key: object = None,
) -> PruneOutcome:
    """Prune ``model`` in place with ``method`` to ``sparsity``; return the masks.

    Methods that score at initialisation score the model as it is; ``rounds`` > 1 re-scores
    with the current masks applied, at density d^(k/rounds) after round k. Methods that
    ``pretrain`` score the dense-trained weights θ_T (from ``training``, cached), then rewind
    the model to θ₀, θ_k, keep θ_T, or re-initialise it; with ``prune_fraction`` they prune,
    rewind and retrain round after round (IMP). A ``pruning_data`` check perturbs the data used
    for scoring and pre-training (never the final training data), a ``scores`` check the scores
    before selection, a ``ticket`` check the rewound model and masks. With ``reuse`` (and a
    ``reuse_key`` naming the model, data and protocol), the ticket before a ticket-only check
    is shared with the clean run: the result is identical, the work is done once.
    """
    sparsity = check_sparsity(sparsity)
    device = torch.device(device)
    model.to(device)
    layers = tuple(prunable_layers(model, policy))
    masks = Masks.ones(model, [layer.name for layer in layers])
    density = 1.0 - sparsity
    check_name = check.name if check is not None else CLEAN_CHECK
    meta: dict[str, Any] = {
        "method": method.spec(),
        "sparsity": sparsity,
        "seed": seed,
        "check": check_name,
        "policy": (policy or PrunablePolicy()).as_dict(),
        "tie_fraction": 0.0,
        "zero_score_fraction": 0.0,
        "warnings": [],
    }
    if method.scorer is None or sparsity == 0.0:
        meta.update(achieved_sparsity=masks.sparsity(), kept=masks.kept(), total=masks.total())
        return PruneOutcome(masks=masks, layers=layers, metadata=meta)
    run = PruneRun(
        model=model, data=data, method=method, layers=layers, density=density, seed=seed, device=device,
        check=check, init_model=init_model, training=training,
    )
    # a check acting on the ticket only leaves everything before it as the clean run has it
    before_ticket = check_name if run.stages - {"ticket"} else CLEAN_CHECK
    key = None
    if reuse is not None and reuse_key is not None:
        key = json.dumps([reuse_key, method.spec(), sparsity, seed, before_ticket], sort_keys=True, default=str)
    masks, unpruned, found_meta = _reused_or_found(run, masks, reuse, key)
    meta.update(found_meta)
    masks = run.perturbed_ticket(masks, unpruned)
    per_layer = masks.layer_kept()
    kept, total = sum(per_layer.values()), masks.total()
    check_achieved(kept, total, density, method, len(layers))
    meta.update(achieved_sparsity=1.0 - kept / total if total else 0.0, kept=kept, total=total)
    collapsed = [n for n, count in per_layer.items() if count == 0]
    if collapsed and not allow_collapse:
        raise LayerCollapseError(
            f"{len(collapsed)} layer(s) lost every weight ({', '.join(collapsed[:3])}"
            f"{' ...' if len(collapsed) > 3 else ''}), which disconnects the network; "
            "lower the sparsity, use another schedule, or allow collapse (--allow-collapse)"
        )
    return PruneOutcome(masks=masks, layers=layers, metadata=meta, unpruned=unpruned)


def _reused_or_found(
    run: PruneRun, masks: Masks, reuse: TicketCache | None, key: str | None
) -> tuple[Masks, Mapping[str, torch.Tensor], dict[str, Any]]:
    """The ticket before its ticket check, its unpruned weights and what to record about it:
    kept in ``reuse`` under ``key`` (the model's state restored from there), else found and
    kept there."""
    found = reuse.get(key) if reuse is not None and key is not None else None
    if found is not None:
        masks, state, unpruned, found_meta = found
        run.model.load_state_dict(state)
        return masks, unpruned, found_meta
    masks, unpruned, found_meta = _find_ticket(run, masks)
    if reuse is not None and key is not None:
        state = {n: v.detach().clone() for n, v in run.model.state_dict().items()}
        reuse.put(key, (Masks(dict(masks)), state, unpruned, found_meta))
    return masks, unpruned, found_meta


def check_achieved(kept: int, total: int, density: float, method: Method, layers: int) -> None:
    """``kept`` of ``total`` weights is ``round(density · total)`` within one weight per layer,
    or a one-line error: a result at the wrong sparsity is never returned."""
    target = round(density * total)
    if abs(kept - target) > layers:
        raise PrunekitError(
            f"method {method.name!r} kept {kept:,} of {total:,} prunable weights (sparsity "
            f"{1 - kept / total:.4f}), but sparsity {1 - density:.4f} keeps {target:,} ± {layers} "
            f"(one per layer): schedule {method.schedule!r} misses its budget; report it to its author"
        )


def _prunable_copy(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


REINIT_SEED_OFFSET = 1_000_003


def _rewind(run: PruneRun, dense: DenseRun, k: int, trained: dict[str, torch.Tensor]) -> None:
    """Set the model's weights to the rewinding point of the run's method."""
    model, method = run.model, run.method
    if method.rewind == "init":
        model.load_state_dict(dense.states[0])
    elif method.rewind == "step":
        model.load_state_dict(dense.at(k))
    elif method.rewind == "trained":
        model.load_state_dict(trained)
    else:  # reinit: the same mask on a fresh initialisation from another seed (Ma et al.)
        if run.init_model is None:
            raise PrunekitError(f"method {method.name!r} needs a way to re-initialise the model")
        model.load_state_dict(run.init_model(run.seed + REINIT_SEED_OFFSET).state_dict())
