"""One cell of a benchmark grid: prune with a method under a check, train, evaluate.

:func:`run_cell` is what every executor runs; it returns a :class:`CellResult` and writes
nothing (only the benchmark driver writes the results store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from prunekit.callbacks import Progress
from prunekit.data import DataBundle
from prunekit.defaults import DEFAULT_TRAINER
from prunekit.dense import DenseCache
from prunekit.errors import PrunekitError
from prunekit.identity import NOOP, canonical, option_pairs, plain_options
from prunekit.interfaces import (
    Method,
    RatioSchedule,
    SanityCheck,
    Scorer,
    TrainConfig,
    Trainer,
    TrainResult,
)
from prunekit.masks import Masks
from prunekit.pipeline import TicketCache
from prunekit.plugins import get_plugins
from prunekit.sentinels import CLEAN_CHECK


def _frozen(value: Any) -> Any:
    """Lists (of a TOML file or a stored spec) as tuples, so a spec stays hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def _instrument_pairs(value: Mapping[str, Any] | Sequence[Any] | None) -> tuple[tuple[str, Any], ...]:
    """Instruments as sorted ``(name, options pairs)``: from ``{name: options}``, from names, or
    from such pairs."""
    if not value:
        return ()
    items = value.items() if isinstance(value, Mapping) else [(v, {}) if isinstance(v, str) else (v[0], v[1]) for v in value]
    return tuple(sorted((str(k), option_pairs(_frozen(dict(v or {})))) for k, v in items))


@attrs.frozen(kw_only=True)
class CellSpec:
    """Everything that determines one result (its identity: :func:`prunekit.identity.cell_identity`).

    ``model_options`` go to ``timm.create_model``; ``method_options`` override fields of the
    registered method (``scorer_options`` / ``schedule_options`` are merged into the method's
    own); ``check_options`` are the check's options, ``dataset_options`` the dataset's (e.g.
    its normalization). Each holds only what a suite sets. ``instruments``: the instruments
    that measure the cell with their options (:mod:`prunekit.instruments`).
    """

    model: str
    dataset: str
    method: str
    check: str = CLEAN_CHECK
    sparsity: float
    seed: int
    protocol: TrainConfig = TrainConfig()
    trainer: str = DEFAULT_TRAINER
    data_root: str | None = attrs.field(default=None, eq=False)  # where the files are: not the result
    model_options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=option_pairs, metadata=NOOP)
    method_options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=option_pairs, metadata=NOOP)
    check_options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=option_pairs, metadata=NOOP)
    dataset_options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=option_pairs, metadata=NOOP)
    instruments: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_instrument_pairs, metadata=NOOP)


@attrs.frozen(kw_only=True, eq=False)
class ResolvedCell:
    """The objects a cell runs with: the method after its overrides, the instantiated scorer,
    schedule and check (None when the method does not prune, or for the clean run), the trainer."""

    method: Method
    scorer: Scorer | None
    schedule: RatioSchedule | None
    check: SanityCheck | None
    trainer: Trainer


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
        get_plugins().registry("method").get(spec.method), plain_options(spec.method_options)
    )
    scorer = schedule = None
    if method.scorer is not None:
        scorer = instantiate("scorer", method.scorer, dict(method.scorer_options))
        schedule = instantiate("ratio_schedule", method.schedule, dict(method.schedule_options))
    check = resolve_check(spec.check, method, plain_options(spec.check_options))
    trainer = instantiate("trainer", spec.trainer)
    return ResolvedCell(method=method, scorer=scorer, schedule=schedule, check=check, trainer=trainer)


@attrs.frozen(kw_only=True)
class CellResult:
    final_accuracy: float
    best_accuracy: float
    final_loss: float
    sparsity: float
    effective_sparsity: float | None  # None where it cannot be computed for the model
    layer_density: dict[str, float]
    collapsed_layers: tuple[str, ...]
    history: tuple[dict[str, float], ...]
    mask_hash: str
    wall_time: float
    dense_accuracy: float | None = None  # the dense pre-training's (lottery-ticket family)
    tie_fraction: float | None = None  # of the kept weights, the fraction chosen among tied scores
    warnings: tuple[str, ...] = ()
    instruments: dict[str, Any] = attrs.field(factory=dict)  # {name: measurement} (prunekit.instruments)
    # intra-op threads of the process that trained it: CPU results depend on it (two threads sum
    # floats in another order than one), so each row records it beside its environment
    torch_threads: int | None = None

    def metrics(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(eq=False)
class WorkerState:
    """What one worker keeps between the cells it runs, so that work the cells share is done
    once: the datasets (the last two loaded), the tickets before their ticket check
    (:class:`~prunekit.pipeline.TicketCache`) and one dense cache per folder (in memory for
    ``None``). Executors pass it to :func:`run_cell`; a cell run without one shares nothing."""

    tickets: TicketCache = attrs.Factory(TicketCache)
    datasets: dict[tuple[Any, ...], DataBundle] = attrs.Factory(dict)
    dense: dict[str | None, DenseCache] = attrs.Factory(dict)
    keep_datasets: int = 2

    def data(self, dataset: str, root: str | None, options: tuple[tuple[str, Any], ...] = ()) -> DataBundle:
        """The dataset ``dataset`` (options as :func:`option_pairs`), loaded once."""
        key = (dataset, root, options)
        if key not in self.datasets:
            from prunekit.pipeline import load_dataset

            bundle = load_dataset(dataset, root, options=plain_options(options))
            while len(self.datasets) >= self.keep_datasets:
                del self.datasets[next(iter(self.datasets))]
            self.datasets[key] = bundle
        return self.datasets[key]

    def dense_cache(self, folder: str | None) -> DenseCache:
        """The dense cache in ``folder`` (on disk; in memory when None), shared by every cell
        this worker runs, so pre-training is computed once per (model, data, protocol, seed)."""
        if folder not in self.dense:
            self.dense[folder] = DenseCache(folder)
        return self.dense[folder]


_WORKER: WorkerState | None = None


def worker_state() -> WorkerState:
    """This process's worker state: the one a worker process (or the bench driver, for the
    cells it runs itself) passes to every cell it runs."""
    global _WORKER
    if _WORKER is None:
        _WORKER = WorkerState()
    return _WORKER


def final_start_step(method: Method, train_size: int, protocol: TrainConfig) -> int:
    """The step the final training starts its learning-rate schedule from: the rewinding step k
    of a late-rewinding method whose ``rewind_schedule`` is ``continue`` (its ``rewind_point``
    as a step of this protocol on ``train_size`` samples), else 0 (the schedule restarts)."""
    if method.rewind != "step" or method.rewind_schedule != "continue":
        return 0
    from prunekit.dense import rewind_step

    steps_per_epoch = -(-train_size // protocol.batch_size)
    return rewind_step(method.rewind_point, steps_per_epoch * protocol.epochs)


@attrs.frozen(kw_only=True, eq=False)
class PreparedCell:
    """A cell after pruning and its check, before the final training (:func:`prepare_cell`):
    the ticket (``model`` with ``masks`` applied), the data, the trainer and protocol to train it
    with, and what pruning recorded. An executor may train several prepared cells together
    (the batched trainer) and then :func:`finish_cell` each."""

    spec: CellSpec
    model: torch.nn.Module
    masks: Masks
    data: DataBundle
    trainer: Trainer
    start_step: int
    metadata: Mapping[str, Any]
    effective_sparsity: float | None
    started: float
    instruments: Any = None  # a prunekit.instruments.InstrumentRun when the spec names instruments


def prepare_cell(
    spec: CellSpec,
    *,
    device: torch.device | str = "cpu",
    state: WorkerState | None = None,
    cache: DenseCache | None = None,
) -> PreparedCell:
    """Prune ``spec``'s model with its method under its check (everything before the final
    training). ``state`` holds what cells share (a fresh one when None), ``cache`` the dense
    cache (default: ``state``'s in memory). Raises on any failure."""
    from prunekit import pipeline
    from prunekit.diagnostics import effective_sparsity

    started = time.perf_counter()
    device = torch.device(device)
    state = WorkerState() if state is None else state
    data = state.data(spec.dataset, spec.data_root, spec.dataset_options)
    resolved = resolve_cell(spec)
    model_options = plain_options(spec.model_options)

    def build(seed: int) -> torch.nn.Module:
        if model_options:
            return pipeline.build_model(spec.model, data, seed, options=model_options)
        return pipeline.build_model(spec.model, data, seed)

    model = build(spec.seed)
    training = cell_training(spec, resolved.trainer, cache if cache is not None else state.dense_cache(None), device)
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
        reuse=state.tickets,
        reuse_key=[
            spec.model, canonical(model_options), spec.dataset, canonical(plain_options(spec.dataset_options)),
            spec.data_root, canonical(spec.protocol), spec.trainer,
        ],
    )
    start_step = final_start_step(resolved.method, len(data.train), spec.protocol)
    instruments = None
    if spec.instruments:
        from prunekit.instruments import start_instruments

        def dense(steps: Sequence[int] = ()) -> Any:
            return pipeline.dense_run(
                build(spec.seed), data, resolved.method, training, seed=spec.seed,
                pruning_train=data.train, check_name=CLEAN_CHECK, extra_steps=steps,
            )  # fmt: skip

        instruments = start_instruments(
            spec, method=resolved.method, model=model, masks=outcome.masks, data=data,
            trainer=resolved.trainer, device=device, start_step=start_step,
            unpruned=outcome.unpruned, build=lambda seed: build(seed).to(device), dense=dense,
        )  # fmt: skip
    return PreparedCell(
        spec=spec,
        model=model,
        masks=outcome.masks,
        data=data,
        trainer=resolved.trainer,
        start_step=start_step,
        metadata=outcome.metadata,
        effective_sparsity=effective_sparsity(model, outcome.masks, data.input_shape),
        started=started,
        instruments=instruments,
    )


def cell_training(spec: CellSpec, trainer: Trainer, cache: DenseCache, device: torch.device) -> Any:
    """How ``spec`` trains, for methods that pre-train (a :class:`prunekit.pipeline.Training`
    naming the dense run in ``cache``)."""
    from prunekit import pipeline

    return pipeline.Training(
        trainer=trainer,
        config=spec.protocol,
        model_name=spec.model,
        model_options=plain_options(spec.model_options),
        # the dense cache's name for the data: the options enter only when set (old entries stay valid)
        dataset_key=spec.dataset if not spec.dataset_options else f"{spec.dataset}{canonical(plain_options(spec.dataset_options))}",
        cache=cache,
        device=device,
    )


def finish_cell(prepared: PreparedCell, result: TrainResult, *, train_seconds: float | None = None) -> CellResult:
    """The result of a prepared cell trained to ``result``. ``train_seconds`` replaces the
    time since preparation began when the training was shared with other cells."""
    from prunekit.diagnostics import collapsed_layers

    masks, meta = prepared.masks, prepared.metadata
    wall = time.perf_counter() - prepared.started if train_seconds is None else train_seconds
    measured: dict[str, Any] = {}
    if prepared.instruments is not None:  # after the wall time: it stays the cell's own cost
        from prunekit.instruments import finish_instruments

        measured = finish_instruments(prepared.instruments, prepared.model, result)
    return CellResult(
        final_accuracy=result.final_accuracy,
        best_accuracy=result.best_accuracy,
        final_loss=result.final_loss,
        sparsity=masks.sparsity(),
        effective_sparsity=prepared.effective_sparsity,
        layer_density=masks.layer_density(),
        collapsed_layers=tuple(collapsed_layers(masks)),
        history=result.history,
        mask_hash=masks.content_hash(),
        wall_time=wall,
        dense_accuracy=meta.get("dense_accuracy"),
        tie_fraction=meta.get("tie_fraction"),
        warnings=tuple(meta.get("warnings", ())),
        instruments=measured,
        torch_threads=torch.get_num_threads(),
    )


def run_cell(
    spec: CellSpec,
    *,
    device: torch.device | str = "cpu",
    state: WorkerState | None = None,
    cache: DenseCache | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    trained: Callable[[PreparedCell], None] | None = None,
) -> CellResult:
    """Prune, perturb, train and evaluate one cell. Raises on any failure. ``state`` and
    ``cache`` as :func:`prepare_cell`. ``progress`` gets
    each epoch's record; ``trained`` the prepared cell once trained (its masks, its model with
    the final weights), e.g. to keep them as artifacts."""
    prepared = prepare_cell(spec, device=device, state=state, cache=cache)
    start = prepared.start_step
    # trainers written before start_step or callbacks keep working: each is passed only when set
    resume: dict[str, Any] = {"start_step": start} if start else {}
    if progress is not None:
        resume["callbacks"] = [Progress(progress)]
    result = prepared.trainer.fit(
        prepared.model, prepared.data, prepared.spec.protocol, masks=prepared.masks, seed=spec.seed,
        device=torch.device(device), **resume,
    )  # fmt: skip
    if trained is not None:
        trained(prepared)
    return finish_cell(prepared, result)
