"""The Ray executor on a two-node local cluster that loses a node in the middle of a grid:
every cell is recorded exactly once, with the results of a local run."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from prunekit.bench.executors import Outcome
from prunekit.bench.runner import run_bench
from prunekit.bench.store import ResultStore
from prunekit.bench.suite import load_suite
from prunekit.cell import CellSpec

ray = pytest.importorskip("ray", reason="the ray extra is not installed")  # installed in CI by .ci/run
from ray.cluster_utils import Cluster  # noqa: E402 - after the skip when ray is missing

from prunekit_plugins.ray_executor import RayExecutor  # noqa: E402 - imports ray

GRID = """
name = "ray_lost_node"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0, 1, 2, 3]
methods = ["random_uniform", "snip"]
checks = ["none"]

[protocol]
epochs = 2
batch_size = 64
lr = 0.05
lr_schedule = "cosine"
"""


class CountingRay(RayExecutor):
    """The Ray executor, counting what it hands to the driver."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.yielded: Counter[CellSpec] = Counter()

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        for outcome in super().run(cells, device=device, cache_dir=cache_dir):
            self.yielded[outcome[0]] += 1
            yield outcome


def _children(pid: int) -> dict[int, str]:
    """{pid: command line} of the processes whose parent is ``pid`` (Linux /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry.name)] = cmdline.strip()
    return out


def _raylet_process(node: object):  # type: ignore[no-untyped-def]
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process  # type: ignore[attr-defined]


def _raylet(node: object) -> int:
    return int(_raylet_process(node).pid)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The in-process reference runs with one thread, as Ray workers with num_cpus=1 do."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_grid_survives_losing_a_node(tmp_path: Path, one_thread: None) -> None:
    """A head and a worker node (1 CPU each, both on this machine) run an 8-cell grid through run_bench;
    the worker node is killed while it runs a cell, after the first result. Every cell ends
    ``done`` once in the store, the executor hands each cell over exactly once, and accuracies
    and losses are those of the local run (losses up to float summation order)."""
    (tmp_path / "grid.toml").write_text(GRID)
    suite = load_suite(tmp_path / "grid.toml")
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local = run_bench(suite, db=tmp_path / "local" / "r.db", progress=False)
    assert local.done == 8 and local.failed == 0

    seen: set[int] = set()  # every Ray worker process of the test, to be sure none is left
    killed = threading.Event()
    stop = threading.Event()
    # both nodes on this machine, at the address Ray picks for it (the driver resolves a
    # 127.0.0.1 cluster address to that same address before connecting)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=1)
        head_raylet, worker_raylet = _raylet(cluster.head_node), _raylet(worker)
        raylet_process = _raylet_process(worker)
        executor = CountingRay(jobs=2, address=cluster.address)

        def kill_when_busy() -> None:
            """Kill the worker node once a cell is done and it is running another one."""
            while not stop.is_set():
                running = _children(worker_raylet)
                seen.update(running)
                seen.update(_children(head_raylet))
                busy = any(cmd.startswith("ray::run_unit") for cmd in running.values())
                if busy and sum(executor.yielded.values()) >= 1:
                    # its check for zombie processes can fail on a slow machine
                    with contextlib.suppress(AssertionError):
                        cluster.remove_node(worker, allow_graceful=False)
                    if raylet_process.poll() is not None:
                        killed.set()
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        summary = run_bench(suite, db=tmp_path / "ray" / "r.db", executor=executor, progress=False)
        stop.set()
        killer.join(timeout=30)
    finally:
        stop.set()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        _reap(seen)

    assert killed.is_set(), "the grid ended before the worker node was seen running a cell"
    errors = [r.error for r in summary.rows if r.error]
    assert summary.done == 8 and summary.failed == 0, (summary.line(), errors)
    assert set(executor.yielded.values()) == {1} and len(executor.yielded) == 8
    with ResultStore(tmp_path / "ray" / "r.db") as store:
        rows = {r.key: r for r in store.rows(suite=suite.name)}
        assert store.count() == 8
    reference = {r.key: r for r in local.rows}
    assert rows.keys() == reference.keys()
    for key, row in rows.items():
        ref = reference[key]
        assert row.status == "done"
        assert row.final_accuracy == ref.final_accuracy and row.best_accuracy == ref.best_accuracy
        assert row.final_loss is not None and ref.final_loss is not None
        assert abs(row.final_loss - ref.final_loss) <= 1e-6 * max(1.0, abs(ref.final_loss))


def _reap(pids: set[int]) -> None:
    """Wait for the test's Ray worker processes to exit with their raylets; kill any left."""
    deadline = time.monotonic() + 10
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if Path(f"/proc/{p}").exists() and _state(p) != "Z"}
        time.sleep(0.1)
    for pid in alive:
        try:
            if not (Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")):
                continue  # not a Ray worker any more
            os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
