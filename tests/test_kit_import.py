"""The conformance kit's pytest plugin costs nothing in projects that do not use it.

pytest loads ``prunekit.testing.pytest_plugin`` (entry point ``pytest11``) in every project of
an environment where prunekit is installed; it must import neither torch, timm nor any
prunekit plugin until a test asks for the ``prunekit_conformance`` fixture.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import prunekit.testing

HEAVY = ("torch", "timm", "prunekit_plugins", "prunekit.plugins", "prunekit.testing.fixtures")

IMPORT_PLUGIN = f"""
import sys
import prunekit.testing
import prunekit.testing.pytest_plugin
print("LOADED", sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def _clean_env() -> dict[str, str]:
    """This environment without switches that change which pytest plugins load."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def test_importing_the_pytest_plugin_imports_nothing_heavy(tmp_path: Path) -> None:
    """In a fresh interpreter, the pytest plugin module and the kit's package import neither
    torch, timm, the plugins nor the kit's contracts."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PLUGIN],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False, env=_clean_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("LOADED []"), done.stdout[-300:]


def test_pytest11_entry_point_is_the_light_plugin() -> None:
    """The entry point pytest loads names the light module, not the kit."""
    points = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.value.startswith("prunekit")
    ]
    assert [(ep.name, ep.value) for ep in points] == [("prunekit", "prunekit.testing.pytest_plugin")]


OTHER_PROJECT = '''
import sys


def test_without_the_kit(request):
    assert request.config.pluginmanager.has_plugin("prunekit")  # the kit's plugin is loaded
    assert "torch" not in sys.modules
    assert "prunekit.testing.fixtures" not in sys.modules


def test_with_the_kit(prunekit_conformance):
    assert issubclass(prunekit_conformance.ConformanceError, AssertionError)
    assert "torch" in sys.modules  # the fixture brought the kit
'''


def test_pytest_in_another_project_imports_torch_only_for_the_fixture(tmp_path: Path) -> None:
    """A pytest run of a project without conftest that has prunekit installed: its test that
    does not use the kit sees no torch; the next one, asking for the fixture, gets the kit."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_other.py").write_text(OTHER_PROJECT)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_other.py"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False, env=_clean_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout


def test_every_public_name_of_the_kit_imports_from_the_package() -> None:
    """``from prunekit.testing import X`` works for every name of ``__all__`` and gives the
    object of the contract module that defines it."""
    from prunekit.testing import scorer, trainer

    for name in prunekit.testing.__all__:
        assert getattr(prunekit.testing, name) is not None, name
    assert prunekit.testing.check_scorer is scorer.check_scorer
    assert prunekit.testing.TRAINER_CONFIG is trainer.TRAINER_CONFIG
    assert set(prunekit.testing.__all__) <= set(dir(prunekit.testing))
