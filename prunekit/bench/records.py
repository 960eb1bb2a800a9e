"""The record of one benchmark cell, as the results store keeps it and reports read it."""

from __future__ import annotations

from typing import Any, Literal

import attrs

# stale: a stored row that today's code would key differently (marked by readers, never stored)
Status = Literal["done", "failed", "diverged", "running", "not_applicable", "stale"]


@attrs.frozen(kw_only=True)
class ResultRow:
    """One cell: what was run (spec + protocol fingerprint) and what came out."""

    key: str  # prunekit.identity.cell_identity(...).key
    suite: str
    model: str
    dataset: str
    method: str
    check: str
    sparsity: float  # target sparsity
    seed: int
    protocol: str  # fingerprint of the training + scoring protocol
    status: Status
    final_accuracy: float | None = None
    best_accuracy: float | None = None
    final_loss: float | None = None
    achieved_sparsity: float | None = None
    effective_sparsity: float | None = None
    wall_time: float | None = None
    error: str | None = None
    layer_density: dict[str, float] = attrs.field(factory=dict)
    history: list[dict[str, float]] = attrs.field(factory=list)
    environment: dict[str, Any] = attrs.field(factory=dict)  # versions, device, plugins
    bench_id: str = ""
    mask_hash: str | None = None  # content hash of the final masks (prunekit.masks)
    dense_accuracy: float | None = None  # the dense pre-training's test accuracy (lottery tickets)
    tie_fraction: float | None = None  # of the kept weights, the fraction chosen among tied scores
    warnings: list[str] = attrs.field(factory=list)
    spec: dict[str, Any] = attrs.field(factory=dict)  # the cell spec (runner.spec_from_payload)
    identity: dict[str, Any] = attrs.field(factory=dict)  # the payload the key hashes
    instruments: dict[str, Any] = attrs.field(factory=dict)  # {name: measurement} (prunekit.instruments)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)
