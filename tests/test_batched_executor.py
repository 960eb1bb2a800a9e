"""The ``batched`` executor: every cell's result equals the local executor's, up to float
summation order, while cells of one protocol train together."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from prunekit.bench.executors import Executor
from prunekit.cell import CellSpec
from prunekit.interfaces import TrainConfig
from prunekit.plugins import get_plugins

PROTOCOL = TrainConfig(epochs=2, batch_size=128, lr=0.05, lr_schedule="cosine")
CELLS = [
    CellSpec(model="digits_mlp", dataset="digits", method=m, check=c, sparsity=0.8, seed=s, protocol=PROTOCOL)
    for m, c in (("snip", "none"), ("random_ticket", "layerwise_rearrange"), ("lottery_ticket", "reinit"))
    for s in (0, 1)
]


def _results(executor: Executor, cells: list[CellSpec]) -> dict[CellSpec, tuple[Any, ...]]:
    out = {}
    for spec, result, error in executor.run(cells, device="cpu", cache_dir=None):
        assert error is None, error
        assert result is not None and spec not in out
        out[spec] = (result.mask_hash, result.final_accuracy, result.best_accuracy, result.final_loss)
    return out


def test_batched_matches_local() -> None:
    """Masks identical; accuracies within two test images and losses within 1e-3 of the local
    executor (the stacked model sums in another order, and fp32 rounding can tip a near-tie);
    every cell comes back once."""
    registry = get_plugins().registry("executor")
    local = _results(registry.get("local")(), CELLS)
    batched = _results(registry.get("batched")(members=4), CELLS)
    assert batched.keys() == local.keys() == set(CELLS)
    two_images = 2.0 / 360 + 1e-9
    for spec in CELLS:
        (h1, f1, b1, l1), (h2, f2, b2, l2) = local[spec], batched[spec]
        assert h1 == h2, spec
        assert abs(f1 - f2) <= two_images and abs(b1 - b2) <= two_images, (spec, f1, f2)
        assert abs(l1 - l2) <= 1e-3 * max(1.0, abs(l1)), (spec, l1, l2)


def test_protocols_the_batched_trainer_cannot_follow_train_alone() -> None:
    """A protocol with gradient clipping is trained one cell at a time (same result as local)."""
    clipped = attrs.evolve(PROTOCOL, epochs=1, grad_clip_norm=1.0)
    cells = [attrs.evolve(c, protocol=clipped) for c in CELLS[:2]]
    registry = get_plugins().registry("executor")
    assert _results(registry.get("batched")(), cells) == _results(registry.get("local")(), cells)


def test_members_must_be_positive() -> None:
    """members=0 is refused with a clear message."""
    from prunekit.errors import PrunekitError

    with pytest.raises(PrunekitError, match="at least 1"):
        get_plugins().registry("executor").get("batched")(members=0)
