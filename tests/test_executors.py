"""Executors: local, worker processes and Ray give the same results for the same grid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from prunekit.cell import CellSpec
from prunekit.errors import PrunekitError
from prunekit.interfaces import TrainConfig
from prunekit.plugins import get_plugins, reset_plugins

PROTOCOL = TrainConfig(epochs=1, batch_size=128, lr=0.05, lr_schedule="cosine")
CELLS = [
    CellSpec(model="digits_mlp", dataset="digits", method=m, check=c, sparsity=0.8, seed=s, protocol=PROTOCOL)
    for m, c in (("snip", "none"), ("random_uniform", "reinit"), ("random_uniform", "layerwise_rearrange"))
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


def _results(name: str, threads: set[int | None] | None = None, **options: object) -> dict[CellSpec, tuple[str, float, float]]:
    """Each cell's (mask hash, accuracy, loss); ``threads`` collects the thread counts the
    cells report they trained with."""
    executor = get_plugins().registry("executor").get(name)(**options)
    out = {}
    for spec, result, error in executor.run(CELLS, device="cpu", cache_dir=None):
        assert error is None, error
        assert result is not None
        out[spec] = (result.mask_hash, result.final_accuracy, result.final_loss)
        if threads is not None:
            threads.add(result.torch_threads)
    return out


def test_processes_match_local(one_thread: None) -> None:
    """Two worker processes return, for every cell, the masks and metrics of the local run;
    each cell reports the threads it trained with, measured in the worker (the cores shared
    between the two), since CPU results depend on it."""
    from prunekit.executing import cpu_cores

    local_threads: set[int | None] = set()
    local = _results("local", local_threads)
    assert len(local) == len(CELLS) and len({h for h, _, _ in local.values()}) == len(CELLS)
    assert local_threads == {1}
    worker_threads: set[int | None] = set()
    assert _same(_results("processes", worker_threads, jobs=2), local)
    assert worker_threads == {max(1, cpu_cores() // 2)}


def test_ray_matches_local(one_thread: None) -> None:
    """On a local Ray instance with CPUs, the same grid gives the same masks and metrics."""
    pytest.importorskip("ray", reason="the ray extra is not installed")  # installed in CI by .ci/run
    assert _same(_results("ray", jobs=2), _results("local"))


def test_jobs_must_be_positive() -> None:
    """--jobs 0 is refused with a clear message."""
    with pytest.raises(PrunekitError, match="at least 1"):
        get_plugins().registry("executor").get("processes")(jobs=0)


def test_cell_timeout_fails_a_slow_cell_and_the_grid_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a per-cell limit, a cell that runs past it fails with that reason; the next cell
    still runs (the timer is cleared)."""
    import time

    import attrs

    import prunekit.cell

    slow = CELLS[0]
    fast = attrs.evolve(CELLS[1], protocol=attrs.evolve(PROTOCOL, epochs=0))  # evaluation only
    original = prunekit.cell.run_cell

    def sleepy_run_cell(spec: CellSpec, **kwargs: object) -> object:
        if spec == slow:
            time.sleep(120)
        return original(spec, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prunekit.cell, "run_cell", sleepy_run_cell)
    started = time.perf_counter()
    executor = get_plugins().registry("executor").get("local")(cell_timeout=10.0)
    (s1, r1, e1), (s2, r2, e2) = list(executor.run([slow, fast], device="cpu", cache_dir=None))
    assert s1 == slow and r1 is None and e1 is not None and "CellTimeoutError" in e1 and "10 s" in e1
    assert s2 == fast and r2 is not None and e2 is None, e2
    assert time.perf_counter() - started < 120


def test_cell_timeout_must_be_positive() -> None:
    """--cell-timeout 0 is refused with a clear message."""
    with pytest.raises(PrunekitError, match="cell-timeout"):
        get_plugins().registry("executor").get("local")(cell_timeout=0)



def test_work_units_keep_each_ticket_together_costliest_first() -> None:
    """A worker gets the clean run and every check of one ticket together (it finds the ticket
    once); IMP's units, whose cells may each train nine times, come before one-shot tickets'
    and those before pruning at init; among equals, seeds take turns (workers started together
    pre-train different dense networks); every cell is handed out exactly once."""
    from prunekit.executing import ticket_of, work_units

    cells = [
        CellSpec(model="digits_mlp", dataset="digits", method=m, check=c, sparsity=0.8, seed=s, protocol=PROTOCOL)
        for s in (0, 1)
        for m in ("snip", "lottery_ticket", "imp")
        for c in ("none", "reinit", "layerwise_rearrange")
    ]
    units = work_units(cells)
    assert sorted(map(repr, (c for u in units for c in u))) == sorted(map(repr, cells))
    assert len(units) == 6 and all(len({ticket_of(c) for c in u}) == 1 and len(u) == 3 for u in units)
    assert [(u[0].method, u[0].seed) for u in units] == [
        ("imp", 0), ("imp", 1), ("lottery_ticket", 0), ("lottery_ticket", 1), ("snip", 0), ("snip", 1),
    ]  # fmt: skip
    assert [c.check for c in units[0]] == ["none", "reinit", "layerwise_rearrange"]  # grid order inside


def test_processes_find_each_ticket_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two worker processes run a ticket's clean run and the checks that reuse it in one
    worker, so each seed's ticket is scored once, by one process (a scorer plugin logs every
    call with its process id). Handed out one cell at a time, the checks landing on the other
    worker would score the ticket again there."""
    from tests.test_bench_driver import COUNTING

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "counting.py").write_text(COUNTING)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PRUNEKIT_PLUGINS_DIR", str(tmp_path / "plugins"))
    monkeypatch.setenv("COUNTING_LOG", str(log))
    reset_plugins()
    try:
        cells = [
            CellSpec(model="digits_mlp", dataset="digits", method="counting", check=c, sparsity=0.8, seed=s, protocol=PROTOCOL)
            for s in (0, 1)
            for c in ("none", "reinit", "layerwise_rearrange")
        ]
        executor = get_plugins().registry("executor").get("processes")(jobs=2)
        outcomes = list(executor.run(cells, device="cpu", cache_dir=None))
    finally:
        monkeypatch.delenv("PRUNEKIT_PLUGINS_DIR")
        reset_plugins()
    assert sorted(repr(spec) for spec, _, _ in outcomes) == sorted(map(repr, cells))
    assert all(error is None for _, _, error in outcomes), [e for _, _, e in outcomes if e]
    calls = [tuple(line.split()) for line in log.read_text().splitlines()]
    assert sorted(seed for seed, _ in calls) == ["0", "1"], calls
