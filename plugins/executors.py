"""Built-in benchmark executors: ``local`` and ``processes``."""

from __future__ import annotations

from prunekit.bench.executors import LocalExecutor, ProcessExecutor
from prunekit.hookspecs import hookimpl


@hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(LocalExecutor)
    register(ProcessExecutor)
