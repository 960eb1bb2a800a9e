"""Built-in benchmark executors: ``local`` and ``processes``."""

from __future__ import annotations

from prunekit import hookimpl
from prunekit.executing import LocalExecutor, ProcessExecutor


@hookimpl
def register_executors(register):  # type: ignore[no-untyped-def]
    register(LocalExecutor)
    register(ProcessExecutor)
