"""Executors: local, worker processes and Ray give the same results for the same grid."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from prunekit.cell import CellSpec
from prunekit.errors import PrunekitError
from prunekit.interfaces import TrainConfig
from prunekit.plugins import get_plugins

PROTOCOL = TrainConfig(epochs=1, batch_size=128, lr=0.05, lr_schedule="cosine")
CELLS = [
    CellSpec(model="digits_mlp", dataset="digits", method=m, check=c, sparsity=0.8, seed=s, protocol=PROTOCOL)
    for m, c in (("snip", "none"), ("random_uniform", "reinit"))
    for s in (0, 1)
]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Workers run with one thread each; the in-process reference does too, so float
    reductions happen in the same order everywhere."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _same(a: dict[CellSpec, tuple[str, float, float]], b: dict[CellSpec, tuple[str, float, float]]) -> bool:
    """Identical masks and accuracies; losses equal up to float summation order (1e-6)."""
    return a.keys() == b.keys() and all(
        a[k][:2] == b[k][:2] and abs(a[k][2] - b[k][2]) <= 1e-6 * max(1.0, abs(b[k][2])) for k in a
    )


def _results(name: str, **options: object) -> dict[CellSpec, tuple[str, float, float]]:
    executor = get_plugins().registry("executor").get(name)(**options)
    out = {}
    for spec, result, error in executor.run(CELLS, device="cpu", cache_dir=None):
        assert error is None, error
        assert result is not None
        out[spec] = (result.mask_hash, result.final_accuracy, result.final_loss)
    return out


def test_processes_match_local(one_thread: None) -> None:
    """Two worker processes return, for every cell, the masks and metrics of the local run."""
    local = _results("local")
    assert len(local) == len(CELLS) and len({h for h, _, _ in local.values()}) == len(CELLS)
    assert _same(_results("processes", jobs=2), local)


def test_ray_matches_local(one_thread: None) -> None:
    """On a local Ray instance with CPUs, the same grid gives the same masks and metrics."""
    pytest.importorskip("ray", reason="the ray extra is not installed")  # installed in CI by .ci/run
    assert _same(_results("ray", jobs=2), _results("local"))


def test_jobs_must_be_positive() -> None:
    """--jobs 0 is refused with a clear message."""
    with pytest.raises(PrunekitError, match="at least 1"):
        get_plugins().registry("executor").get("processes")(jobs=0)
