"""The ``ray`` executor: cells as Ray tasks (one GPU each on GPU suites) on an existing cluster.

``prunekit bench --executor ray --ray-address auto`` connects to a running cluster
(``ray start --head`` on the head node); without an address a local Ray instance is started.
Results return to the driver, which alone writes the store. Needs ``pip install 'prunekit[ray]'``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from prunekit.bench.executors import Executor, Outcome, run_one
from prunekit.cell import CellSpec
from prunekit.errors import PrunekitError
from prunekit.hookspecs import hookimpl


class RayExecutor(Executor):
    name: ClassVar[str] = "ray"
    description: ClassVar[str] = "Ray tasks on a cluster (--ray-address), one GPU per cell on GPU suites"

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        try:
            import ray
        except ImportError:
            raise PrunekitError("the ray executor needs Ray: pip install 'prunekit[ray]'") from None
        address = self.options.get("address")
        started_here = not ray.is_initialized()
        if started_here:
            try:
                local = {} if address else {"num_cpus": self.jobs, "_node_ip_address": "127.0.0.1"}
                ray.init(
                    address=address or None,
                    include_dashboard=False,
                    log_to_driver=False,
                    ignore_reinit_error=True,
                    **local,
                )
            except (ConnectionError, RuntimeError, ValueError, SystemExit) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise PrunekitError(f"cannot connect to the Ray cluster at {address!r}: {first}") from None
        gpus = 1 if device.startswith("cuda") else 0
        task = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)(run_one)
        pending = {
            task.remote(spec, "cuda" if gpus else device, str(cache_dir) if cache_dir else None): spec
            for spec in cells
        }
        try:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    spec = pending.pop(ref)
                    try:
                        result, error = ray.get(ref)
                    except Exception as err:  # the task's worker died
                        result, error = None, f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
                    yield spec, result, error
        finally:
            if started_here:
                ray.shutdown()


@hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(RayExecutor)
