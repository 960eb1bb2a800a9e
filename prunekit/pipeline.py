"""One pruning run: model -> [pre-train] -> score -> allocate -> select -> check -> rewind.

:func:`prune` turns a model, data and a :class:`~prunekit.interfaces.Method` into masks;
:func:`build_model`, :func:`load_dataset` and :func:`resolve_method` turn names into objects
with one-line errors for unknown names. Everything random is drawn from the run seed.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from prunekit import __version__
from prunekit.data import ArrayData, DataBundle, augment_batch, balanced_indices, make_generator
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
from prunekit.selection import check_scores, exclude_pruned, select_top


# ------------------------------------------------------------------------- names -> objects
def instantiate(kind: str, name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The registered class ``name`` of ``kind`` built with ``options`` (one-line error)."""
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


def build_model(name: str, data: DataBundle, seed: int) -> nn.Module:
    """A timm model for ``data`` (classes, input channels), initialised from ``seed``."""
    import timm

    get_plugins()  # model plugins register into timm on import
    if not timm.is_model(name):
        import difflib

        known = timm.list_models()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownNameError(f"unknown model {name!r}; {hint}see `prunekit list model` or timm.list_models()")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(name, num_classes=data.num_classes, in_chans=data.input_shape[0])


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
            name=f"{scorer}+{schedule or 'global'}",
            description=f"{scorer} scores, {schedule or 'global'} budgets",
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
    if name is None or name == "none":
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


def scoring_batches(
    data: DataBundle,
    request: Any,
    seed: int,
    device: torch.device,
    train: ArrayData | None = None,
    *,
    augment: bool = False,
) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """``request.iterations`` class-balanced batches from the (possibly perturbed) train split.

    With ``augment`` (a method's ``scoring_augment``) every batch goes through the data's
    training augmentation (random crop and flip) before normalisation, as a batch taken from the
    authors' augmented training loader is; the draws come from their own seeded stream, so the
    same images are chosen with and without it.
    """
    if request is None:
        return ()
    train = train if train is not None else data.train
    g = make_generator(seed, "scoring-batch")
    flips = make_generator(seed, "scoring-augment") if augment else None
    out = []
    for _ in range(request.iterations):
        idx = balanced_indices(train.y, request.samples_per_class, data.num_classes, g)
        images = train.x[idx.to(train.x.device)].to(device)
        if flips is not None:
            images = augment_batch(images, data.augment, flips)
        out.append((data.normalize(images), train.y[idx.to(train.y.device)].to(device)))
    return tuple(out)


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
) -> DenseRun:
    """The dense training of ``model`` (at θ₀) on the pruning data, with θ_k kept; cached.

    The cache key is everything that changes the training (the pruning-data check with its
    options included), not which states are kept: every method shares the run. It keeps θ₀,
    θ_k of ``method`` and of every registered late-rewinding method, so that the whole
    lottery-ticket family trains dense once whatever order its methods come in.
    """
    steps_per_epoch = -(-len(pruning_train) // training.config.batch_size)
    total = steps_per_epoch * training.config.epochs
    k = rewind_step(method.rewind_point, total) if method.rewind == "step" else 0
    wanted = {0, k} | {
        rewind_step(m.rewind_point, total)
        for m in (e.obj for e in get_plugins().registry("method").entries())
        if m.pretrain and m.rewind == "step"
    }
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
            snapshot_steps=snapshot_steps,
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


def _density_steps(method: Method, density: float) -> list[float]:
    """Target densities of successive prune-retrain rounds (IMP), ending at ``density``."""
    if method.prune_fraction <= 0:
        return [density]
    steps, d = [], 1.0
    while d * (1 - method.prune_fraction) > density + 1e-12:
        d *= 1 - method.prune_fraction
        steps.append(d)
    return [*steps, density]


def _score_and_select(
    model: nn.Module,
    data: DataBundle,
    method: Method,
    layers: tuple[PrunableLayer, ...],
    masks: Masks,
    density: float,
    *,
    seed: int,
    device: torch.device,
    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...],
    scorer: Scorer,
    schedule: RatioSchedule,
    check: SanityCheck | None,
    check_rng: torch.Generator,
) -> Masks:
    """``method.rounds`` scoring rounds from the current masks' density down to ``density``."""
    start = masks.density()
    for k in range(1, method.rounds + 1):
        target = start * (density / start) ** (k / method.rounds)
        masks.apply(model)
        ctx = ScoringContext(
            layers=layers,
            masks=masks,
            batches=batches,
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            seed=seed,
            device=device,
        )
        scores = scorer.score(model, ctx)
        check_scores(layers, scores, f"scorer {method.scorer!r}")
        scores = exclude_pruned(scores, masks)
        early = check is not None and "scores" in check.stages() and check.scores_before_budgets()
        if check is not None and early:  # the schedule allocates on the perturbed scores
            scores = exclude_pruned(check.perturb_scores(scores, check_rng), masks)
        counts = schedule.allocate(layers, target, scores)
        if check is not None and "scores" in check.stages() and not early:  # budgets stay the clean ones
            scores = exclude_pruned(check.perturb_scores(scores, check_rng), masks)
        masks = select_top(layers, scores, counts)
    return masks


def _find_ticket(
    model: nn.Module,
    data: DataBundle,
    method: Method,
    layers: tuple[PrunableLayer, ...],
    masks: Masks,
    density: float,
    *,
    seed: int,
    device: torch.device,
    check: SanityCheck | None,
    check_rng: torch.Generator,
    pruning_check: str,
    init_model: Callable[[int], nn.Module] | None,
    training: Training | None,
) -> tuple[Masks, dict[str, torch.Tensor], dict[str, Any]]:
    """Score, select and rewind: the ticket before any ticket check, with its unpruned
    weights and what to record about it."""
    scorer = instantiate("scorer", method.scorer, dict(method.scorer_options))  # type: ignore[arg-type]
    schedule = instantiate("ratio_schedule", method.schedule, dict(method.schedule_options))
    meta: dict[str, Any] = {
        "scorer_options": attrs.asdict(scorer) if attrs.has(type(scorer)) else {},
        "schedule_options": attrs.asdict(schedule) if attrs.has(type(schedule)) else {},
    }
    pruning_train = data.train
    if check is not None and "pruning_data" in check.stages():
        pruning_train = check.perturb_data(data.train, data.num_classes, check_rng)
    batches = scoring_batches(
        data, scorer.data_request(model, data), seed, device, pruning_train, augment=method.scoring_augment
    )
    select = dict(seed=seed, device=device, batches=batches, scorer=scorer, schedule=schedule, check=check, check_rng=check_rng)
    names = [layer.name for layer in layers]
    if not method.pretrain:
        unpruned = _prunable_copy(model, names)
        masks = _score_and_select(model, data, method, layers, masks, density, **select)  # type: ignore[arg-type]
        masks.apply(model)
        return masks, unpruned, meta
    if training is None:
        raise PrunekitError(f"method {method.name!r} trains the dense network first: give it a training protocol")
    dense = dense_run(
        model, data, method, training, seed=seed, pruning_train=pruning_train, check_name=pruning_check,
        # options such as half_dataset's fraction change the data: part of the cache key
        check_options=attrs.asdict(check) if pruning_check != "none" and attrs.has(type(check)) else None,
    )
    meta["dense_accuracy"] = dense.final_accuracy
    k = rewind_step(method.rewind_point, dense.steps) if method.rewind == "step" else 0
    trained = dense.final
    densities = _density_steps(method, density)
    meta["round_densities"] = []
    for i, round_density in enumerate(densities):
        model.load_state_dict(trained)
        masks = _score_and_select(model, data, method, layers, masks, round_density, **select)  # type: ignore[arg-type]
        meta["round_densities"].append(masks.density())
        _rewind(model, method, dense, k, trained, data, init_model, seed)
        unpruned = _prunable_copy(model, names)
        masks.apply(model)
        if i < len(densities) - 1:  # IMP: retrain the rewound ticket before the next round
            training.trainer.fit(
                model, data, training.config, masks=masks, seed=seed, device=device, train_data=pruning_train
            )
            trained = {n: v.detach().clone() for n, v in model.state_dict().items()}
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
    check_name = check.name if check is not None else "none"
    meta: dict[str, Any] = {"method": method.spec(), "sparsity": sparsity, "seed": seed, "check": check_name}
    if method.scorer is None or sparsity == 0.0:
        return PruneOutcome(masks=masks, layers=layers, metadata=meta)
    stages = check.stages() if check is not None else frozenset()
    check_rng = make_generator(seed, "check", check_name)
    # a check acting on the ticket only leaves everything before it as the clean run has it
    before_ticket = check_name if stages - {"ticket"} else "none"
    key = None
    if reuse is not None and reuse_key is not None:
        key = json.dumps([reuse_key, method.spec(), sparsity, seed, before_ticket], sort_keys=True, default=str)
    found = reuse.get(key) if reuse is not None and key is not None else None
    if found is not None:
        masks, state, unpruned, found_meta = found
        model.load_state_dict(state)
        meta.update(found_meta)
    else:
        masks, unpruned, found_meta = _find_ticket(
            model, data, method, layers, masks, density,
            seed=seed, device=device, check=check, check_rng=check_rng,
            pruning_check=check_name if "pruning_data" in stages else "none",
            init_model=init_model, training=training,
        )
        meta.update(found_meta)
        if reuse is not None and key is not None:
            state = {n: v.detach().clone() for n, v in model.state_dict().items()}
            reuse.put(key, (Masks(dict(masks)), state, unpruned, found_meta))
    if "ticket" in stages:
        if init_model is None:
            raise PrunekitError(f"check {check_name!r} needs a way to re-initialise the model")
        ticket = TicketContext(
            model=model, masks=masks, unpruned=unpruned, generator=check_rng, init_model=init_model
        )
        masks = check.perturb_ticket(ticket)  # type: ignore[union-attr]
        masks.apply(model)
    collapsed = [n for n, kept in masks.layer_kept().items() if kept == 0]
    if collapsed and not allow_collapse:
        raise LayerCollapseError(
            f"{len(collapsed)} layer(s) lost every weight ({', '.join(collapsed[:3])}"
            f"{' ...' if len(collapsed) > 3 else ''}), which disconnects the network; "
            "lower the sparsity, use another schedule, or allow collapse (--allow-collapse)"
        )
    return PruneOutcome(masks=masks, layers=layers, metadata=meta)


def _prunable_copy(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


REINIT_SEED_OFFSET = 1_000_003


def _rewind(
    model: nn.Module,
    method: Method,
    dense: DenseRun,
    k: int,
    trained: dict[str, torch.Tensor],
    data: DataBundle,
    init_model: Callable[[int], nn.Module] | None,
    seed: int,
) -> None:
    """Set the model's weights to the rewinding point of ``method``."""
    if method.rewind == "init":
        model.load_state_dict(dense.states[0])
    elif method.rewind == "step":
        model.load_state_dict(dense.at(k))
    elif method.rewind == "trained":
        model.load_state_dict(trained)
    else:  # reinit: the same mask on a fresh initialisation from another seed (Ma et al.)
        if init_model is None:
            raise PrunekitError(f"method {method.name!r} needs a way to re-initialise the model")
        model.load_state_dict(init_model(seed + REINIT_SEED_OFFSET).state_dict())
