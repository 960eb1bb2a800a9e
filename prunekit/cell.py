"""One cell of a benchmark grid: prune with a method under a check, train, evaluate.

:func:`run_cell` is what every executor runs; it returns a :class:`CellResult` and writes
nothing (only the benchmark driver writes the results store).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch

from prunekit.data import DataBundle
from prunekit.dense import DenseCache
from prunekit.interfaces import TrainConfig
from prunekit.pipeline import TicketCache
from prunekit.plugins import get_plugins


@attrs.frozen(kw_only=True)
class CellSpec:
    """Everything that determines one result."""

    model: str
    dataset: str
    method: str
    check: str = "none"
    sparsity: float
    seed: int
    protocol: TrainConfig = TrainConfig()
    trainer: str = "sgd"
    data_root: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d.pop("data_root")  # where the files are does not change the result
        return d

    def key(self, versions: Mapping[str, str] | None = None) -> str:
        """Content hash of the spec and the versions of the plugins that produce it."""
        payload = {"cell": self.as_dict(), "versions": dict(sorted((versions or {}).items()))}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


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
    dense_accuracy: float | None = None

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
    method = get_plugins().registry("method").get(spec.method)
    check = pipeline.resolve_check(spec.check, method)
    trainer = pipeline.instantiate("trainer", spec.trainer)
    model = pipeline.build_model(spec.model, data, spec.seed)
    training = pipeline.Training(
        trainer=trainer,
        config=spec.protocol,
        model_name=spec.model,
        dataset_key=spec.dataset,
        cache=cache if cache is not None else DenseCache(),
        device=device,
    )
    outcome = pipeline.prune(
        model,
        data,
        method,
        spec.sparsity,
        seed=spec.seed,
        check=check,
        device=device,
        allow_collapse=True,
        init_model=lambda s: pipeline.build_model(spec.model, data, s),
        training=training,
        reuse=ticket_cache(),
        reuse_key=[spec.model, spec.dataset, spec.data_root, attrs.asdict(spec.protocol), spec.trainer],
    )
    masks = outcome.masks
    effective = effective_sparsity(model, masks, data.input_shape)
    result = trainer.fit(model, data, spec.protocol, masks=masks, seed=spec.seed, device=device, progress=progress)
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
    )
