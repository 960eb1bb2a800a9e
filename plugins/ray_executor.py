"""The ``ray`` executor: cells as Ray tasks (one GPU each on GPU suites) on an existing cluster.

Each task runs one work unit (:func:`~prunekit.executing.work_units`): the cells that share a
ticket, so that it is found once rather than on every worker that runs one of its checks.

``prunekit bench --executor ray --ray-address auto`` connects to a running cluster
(``ray start --head`` on the head node); without an address a local Ray instance is started.
Results return to the driver, which alone writes the store. Needs ``pip install 'prunekit[ray]'``.

A node that dies takes its running cells with it: Ray runs such a task again on another node
(``max_retries`` system retries, default 3: node loss, a killed or crashed worker process;
the unit's cells run again), and the driver receives one result per cell whatever happened
on the way. A cell's own
exceptions are not retried: :func:`~prunekit.bench.executors.run_one` returns them as the cell's
error text. Each cell is yielded exactly once: either its result or, when every attempt died
with its worker, the last error.

What the workers need (see docs/performance.md, "A Ray cluster"): prunekit and the plugins of
the grid installed in the same versions as on the driver (or shipped with ``runtime_env``,
e.g. ``{"py_modules": [...]}`` / ``{"pip": [...]}``), the dataset at the cell's ``data_root``
on every node, and the dense cache folder (beside the store on the driver) on a shared file
system if pre-training is to be computed once for the whole cluster rather than once per node.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from prunekit import Executor, Outcome, PrunekitError, hookimpl
from prunekit.executing import CellSpec, run_unit, work_units

DEFAULT_RETRIES = 3  # system failures per task (node lost, worker killed) before its cells are failed


class RayExecutor(Executor):
    """Options: ``address`` (a running cluster; none starts a local instance), ``max_retries``
    (system failures retried per task, default 3) and ``runtime_env`` (passed to ``ray.init``)."""

    name: ClassVar[str] = "ray"
    description: ClassVar[str] = "Ray tasks on a cluster (--ray-address), one GPU per cell on GPU suites"

    _opened = False  # connect() started the connection run() is to close

    def connect(self) -> None:
        """Connect (or start a local instance) before the driver opens the store, so that a
        cluster that cannot be reached leaves the store untouched."""
        self._retries()
        self._opened = self._connect(_ray()) or self._opened

    def _retries(self) -> int:
        retries = self.options.get("max_retries", DEFAULT_RETRIES)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise PrunekitError(f"ray option max_retries must be a whole number >= 0, got {retries!r}")
        return retries

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        ray = _ray()
        retries = self._retries()
        started_here = self._connect(ray) or self._opened
        self._opened = False
        gpus = 1 if device.startswith("cuda") else 0
        task = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=retries, retry_exceptions=False)(run_unit)
        folder = str(cache_dir) if cache_dir else None
        pending = {task.remote(unit, "cuda" if gpus else device, folder): unit for unit in work_units(cells)}
        try:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    unit = pending.pop(ref)  # each reference once: a cell is never yielded twice
                    try:
                        outcomes = ray.get(ref)
                    except Exception as err:  # noqa: BLE001 - every attempt's worker or node died
                        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
                        outcomes = [(None, f"{type(err).__name__}: {text} (after {retries} retries)")] * len(unit)
                    for spec, (result, error) in zip(unit, outcomes, strict=True):
                        yield spec, result, error
        finally:
            for ref in pending:  # the driver stopped early: do not leave cells running
                ray.cancel(ref, force=True)
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Connect to ``address`` (or start a local instance); True when this call did it."""
        if ray.is_initialized():
            return False
        address = self.options.get("address")
        local = {} if address else {"num_cpus": self.jobs, "_node_ip_address": "127.0.0.1"}
        runtime_env = self.options.get("runtime_env")
        if runtime_env is not None:
            local["runtime_env"] = runtime_env
        try:
            ray.init(
                address=address or None,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                **local,
            )
        except (ConnectionError, RuntimeError, ValueError, SystemExit) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if "Could not find any running Ray instance" in first:
                first = "no running Ray cluster was found there; start one (`ray start --head`) or give its address"
            first = first.replace("`--address` flag", "--ray-address")  # Ray names its own flag
            raise PrunekitError(
                f"cannot connect to the Ray cluster at {address!r} (prunekit bench --ray-address): {first}; "
                "leave --ray-address out to start a local Ray instance"
            ) from None
        return True


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PrunekitError("the ray executor needs Ray: pip install 'prunekit[ray]'") from None
    return ray


@hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(RayExecutor)
