"""One cell of a benchmark grid: prune with a method under a check, train, evaluate.

:func:`run_cell` is what every executor runs; it returns a :class:`CellResult` and writes
nothing (only the benchmark driver writes the results store).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from prunekit.data import DataBundle
from prunekit.dense import DenseCache
from prunekit.errors import PrunekitError
from prunekit.identity import canonical, noop_field
from prunekit.interfaces import Method, RatioSchedule, SanityCheck, Scorer, TrainConfig, Trainer
from prunekit.pipeline import TicketCache
from prunekit.plugins import get_plugins


def _pairs(value: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    """Options as sorted ``(key, value)`` pairs (hashable, one order); nested mappings too."""
    items = dict(value or {}).items()
    return tuple(sorted((str(k), _pairs(v) if isinstance(v, Mapping) else v) for k, v in items))


@attrs.frozen(kw_only=True)
class CellSpec:
    """Everything that determines one result (its identity: :func:`prunekit.identity.cell_identity`).

    ``model_options`` go to ``timm.create_model``; ``method_options`` override fields of the
    registered method (``scorer_options`` / ``schedule_options`` are merged into the method's
    own); ``check_options`` are the check's options. Each holds only what a suite sets.
    """

    model: str
    dataset: str
    method: str
    check: str = "none"
    sparsity: float
    seed: int
    protocol: TrainConfig = TrainConfig()
    trainer: str = "sgd"
    data_root: str | None = attrs.field(default=None, eq=False)  # where the files are: not the result
    model_options: tuple[tuple[str, Any], ...] = noop_field((), converter=_pairs)
    method_options: tuple[tuple[str, Any], ...] = noop_field((), converter=_pairs)
    check_options: tuple[tuple[str, Any], ...] = noop_field((), converter=_pairs)


@attrs.frozen(kw_only=True, eq=False)
class ResolvedCell:
    """The objects a cell runs with: the method after its overrides, the instantiated scorer,
    schedule and check (None when the method does not prune, or for the clean run), the trainer."""

    method: Method
    scorer: Scorer | None
    schedule: RatioSchedule | None
    check: SanityCheck | None
    trainer: Trainer


def _plain(options: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    return {k: _plain(v) if _is_pairs(v) else v for k, v in options}


def _is_pairs(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value) and bool(value)


def resolve_method_options(method: Method, overrides: Mapping[str, Any]) -> Method:
    """``method`` with ``overrides`` applied to its fields (options merged); one-line errors."""
    if not overrides:
        return method
    fields = {f.name for f in attrs.fields(Method)} - {"name", "description", "citation", "family"}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in fields:
            raise PrunekitError(
                f"unknown option {key!r} for method {method.name!r}; its options are: {', '.join(sorted(fields))}"
            )
        if key in ("scorer_options", "schedule_options"):
            if not isinstance(value, Mapping):
                raise PrunekitError(f"option {key!r} of method {method.name!r} must be a table of options")
            value = {**dict(getattr(method, key)), **dict(value)}
        changes[key] = value
    try:
        return attrs.evolve(method, **changes)
    except (TypeError, ValueError) as err:
        raise PrunekitError(f"bad option for method {method.name!r}: {err}") from None


def resolve_cell(spec: CellSpec) -> ResolvedCell:
    """Names and options of ``spec`` turned into objects (one-line errors for bad ones)."""
    from prunekit.pipeline import instantiate, resolve_check

    method = resolve_method_options(
        get_plugins().registry("method").get(spec.method), _plain(spec.method_options)
    )
    scorer = schedule = None
    if method.scorer is not None:
        scorer = instantiate("scorer", method.scorer, dict(method.scorer_options))
        schedule = instantiate("ratio_schedule", method.schedule, dict(method.schedule_options))
    check = resolve_check(spec.check, method, _plain(spec.check_options))
    trainer = instantiate("trainer", spec.trainer)
    return ResolvedCell(method=method, scorer=scorer, schedule=schedule, check=check, trainer=trainer)


@attrs.frozen(kw_only=True)
class CellResult:
    final_accuracy: float
    best_accuracy: float
    final_loss: float
    sparsity: float
    effective_sparsity: float
    layer_density: dict[str, float]
    collapsed_layers: tuple[str, ...]
    history: tuple[dict[str, float], ...]
    mask_hash: str
    wall_time: float
    dense_accuracy: float | None = None  # the dense pre-training's (lottery-ticket family)
    tie_fraction: float | None = None  # of the kept weights, the fraction chosen among tied scores
    warnings: tuple[str, ...] = ()

    def metrics(self) -> dict[str, Any]:
        return attrs.asdict(self)


_TICKETS: TicketCache | None = None


def ticket_cache() -> TicketCache:
    """This process's cache of tickets before their ticket check (see :class:`TicketCache`)."""
    global _TICKETS
    if _TICKETS is None:
        _TICKETS = TicketCache()
    return _TICKETS


@functools.lru_cache(maxsize=2)
def _data(dataset: str, root: str | None) -> DataBundle:
    from prunekit.pipeline import load_dataset

    return load_dataset(dataset, root)


def final_start_step(method: Method, train_size: int, protocol: TrainConfig) -> int:
    """The step the final training starts its learning-rate schedule from: the rewinding step k
    of a late-rewinding method whose ``rewind_schedule`` is ``continue`` (its ``rewind_point``
    as a step of this protocol on ``train_size`` samples), else 0 (the schedule restarts)."""
    if method.rewind != "step" or method.rewind_schedule != "continue":
        return 0
    from prunekit.dense import rewind_step

    steps_per_epoch = -(-train_size // protocol.batch_size)
    return rewind_step(method.rewind_point, steps_per_epoch * protocol.epochs)


def run_cell(
    spec: CellSpec,
    *,
    device: torch.device | str = "cpu",
    cache: DenseCache | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> CellResult:
    """Prune, perturb, train and evaluate one cell. Raises on any failure."""
    from prunekit import pipeline
    from prunekit.diagnostics import collapsed_layers, effective_sparsity

    started = time.perf_counter()
    device = torch.device(device)
    data = _data(spec.dataset, spec.data_root)
    resolved = resolve_cell(spec)
    model_options = _plain(spec.model_options)

    def build(seed: int) -> torch.nn.Module:
        if model_options:
            return pipeline.build_model(spec.model, data, seed, options=model_options)  # type: ignore[call-arg]
        return pipeline.build_model(spec.model, data, seed)

    model = build(spec.seed)
    training = pipeline.Training(
        trainer=resolved.trainer,
        config=spec.protocol,
        model_name=spec.model,
        model_options=model_options,
        dataset_key=spec.dataset,
        cache=cache if cache is not None else DenseCache(),
        device=device,
    )
    outcome = pipeline.prune(
        model,
        data,
        resolved.method,
        spec.sparsity,
        seed=spec.seed,
        check=resolved.check,
        device=device,
        allow_collapse=True,
        init_model=build,
        training=training,
        reuse=ticket_cache(),
        reuse_key=[spec.model, canonical(model_options), spec.dataset, spec.data_root, canonical(spec.protocol), spec.trainer],
    )
    masks = outcome.masks
    effective = effective_sparsity(model, masks, data.input_shape)
    start = final_start_step(resolved.method, len(data.train), spec.protocol)
    result = resolved.trainer.fit(
        model, data, spec.protocol, masks=masks, seed=spec.seed, device=device, progress=progress,
        **({"start_step": start} if start else {}),  # trainers written before start_step keep working
    )
    return CellResult(
        final_accuracy=result.final_accuracy,
        best_accuracy=result.best_accuracy,
        final_loss=result.final_loss,
        sparsity=masks.sparsity(),
        effective_sparsity=effective,
        layer_density=masks.layer_density(),
        collapsed_layers=tuple(collapsed_layers(masks)),
        history=result.history,
        mask_hash=masks.content_hash(),
        wall_time=time.perf_counter() - started,
        dense_accuracy=outcome.metadata.get("dense_accuracy"),
        tie_fraction=outcome.metadata.get("tie_fraction"),
        warnings=tuple(outcome.metadata.get("warnings", ())),
    )
