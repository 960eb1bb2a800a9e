"""The shipped benchmark suites (``benchmarks/suites/*.toml``) as a plugin."""

from __future__ import annotations

from importlib.resources import files

from prunekit import hookimpl, load_suite


@hookimpl
def register_suites(register):  # type: ignore[no-untyped-def]
    folder = files("prunekit_plugins.suites")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            suite = load_suite(str(entry))
            register(suite, name=suite.name, description=suite.description)
