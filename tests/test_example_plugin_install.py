"""The example plugin from pip install to the leaderboard and back, in a fresh virtualenv.

``docs/examples/prunekit-gradnorm`` is copied to a temporary folder (building writes
``build/`` and ``*.egg-info`` beside the sources), built and installed with pip into a child
venv that sees *this test's environment* (torch, the editable prunekit, setuptools, pip),
without network (``--no-deps --no-build-isolation``, no index). Then the venv's real CLI must
list the plugin, its method, rank it in a benchmark, run the plugin's own conformance tests,
and forget it after ``pip uninstall``. Nothing is installed into the outer environment.

The child venv is made *without* ``--system-site-packages``: from inside a venv that flag
gives the child the base interpreter's packages, not this environment's, so the test would
pass only where prunekit and torch were also installed into the base Python by hand. Instead
a ``.pth`` file in the child runs ``site.addsitedir`` on this environment's site-packages
folders (so their own ``.pth`` files, the editable install's among them, work there too).
It is made ``--without-pip``: ensurepip would shadow this environment's setuptools and pip;
``<venv>/bin/python -m pip`` runs this environment's pip *for the venv*.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "prunekit-gradnorm"
DIST = "prunekit-gradnorm"


@attrs.define
class Venv:
    """A virtualenv with the example plugin; every command runs with a clean environment."""

    root: Path
    source: Path
    work: Path
    installed: bool = False

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PRUNEKIT_", "PYTEST_", "VIRTUAL_ENV"))
        }
        env.update(
            PIP_NO_INDEX="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PIP_NO_INPUT="1",
            PIP_CACHE_DIR=str(self.work / "pip-cache"),
            PYTHONNOUSERSITE="1",
            PATH=f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        )
        return env

    def run(
        self,
        *args: str | Path,
        what: str,
        timeout: float = 120,
        check: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv; on failure, fail the test with its output."""
        done = subprocess.run(
            [str(a) for a in args],
            check=False,
            cwd=cwd or self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"{what} failed (exit {done.returncode}): {' '.join(map(str, args))}\n"
                f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}",
                pytrace=False,
            )
        return done

    def pip(self, *args: str | Path, what: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.python, "-m", "pip", *args, what=what)

    def prunekit(
        self, *args: str, what: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            self.python, "-m", "prunekit.cli", *args, what=what, check=check, timeout=timeout
        )

    def ensure_installed(self) -> None:
        if not self.installed:
            self.pip(
                "install",
                "--no-deps",
                "--no-build-isolation",
                self.source,
                what=f"pip install {DIST}",
            )
            self.installed = True

    def plugin_rows(self) -> dict[str, dict[str, object]]:
        out = self.prunekit("plugins", "--json", what="prunekit plugins --json").stdout
        return {row["name"]: row for row in json.loads(out)}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """One venv for this module, with the example plugin built and installed."""
    work = tmp_path_factory.mktemp("example-plugin")
    source = work / "src"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    root = work / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    env = Venv(root=root, source=source, work=work)
    link_environment(env)
    probe = env.run(
        env.python,
        "-c",
        "import setuptools, pip, prunekit; print(setuptools.__version__)",
        what="importing setuptools, pip and prunekit in the venv",
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            "the child venv cannot import setuptools, pip and prunekit from this test's environment, "
            "so the example cannot be built offline; install the test extra here "
            f"(pip install -e '.[test]'):\n{probe.stderr[-2000:]}",
            pytrace=False,
        )
    assert int(probe.stdout.split(".")[0]) >= 68, (
        f"setuptools {probe.stdout.strip()} is older than the example's build requirement (>=68)"
    )
    env.ensure_installed()
    yield env


OUTER_SITE_DIRS = list(dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]]))


def child_site_packages(env: Venv) -> Path:
    """The child venv's own site-packages folder."""
    found = subprocess.run(
        [str(env.python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Path(found.stdout.strip())


def link_environment(env: Venv) -> None:
    """Let the child venv see this test's environment (not the base interpreter's packages)."""
    lines = [f"import site; site.addsitedir({folder!r})" for folder in OUTER_SITE_DIRS if Path(folder).is_dir()]
    (child_site_packages(env) / "_outer_environment.pth").write_text("\n".join(lines) + "\n")


def test_child_venv_does_not_depend_on_the_base_interpreter(venv: Venv) -> None:
    """The child venv ignores the base interpreter's site-packages (so the test cannot pass
    because of packages installed there by hand) and imports prunekit and torch from this
    test's environment."""
    cfg = (venv.root / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    probe = venv.run(
        venv.python,
        "-c",
        "import json, sys, sysconfig, prunekit, torch; "
        "print(json.dumps([sys.path, sysconfig.get_paths(vars={'base': sys.base_prefix, "
        "'platbase': sys.base_prefix})['purelib'], prunekit.__file__, torch.__file__]))",
        what="inspecting the child venv",
    )
    path, base_site, prunekit_file, torch_file = json.loads(probe.stdout)
    assert base_site not in path or base_site in OUTER_SITE_DIRS, (
        f"the child venv sees the base interpreter's packages ({base_site})"
    )
    outer = [Path(d).resolve() for d in OUTER_SITE_DIRS]
    assert any(Path(torch_file).resolve().is_relative_to(d) for d in outer), torch_file
    assert Path(prunekit_file).resolve().is_relative_to(Path(__file__).resolve().parents[1]), prunekit_file


def test_installed_plugin_is_listed_with_its_version(venv: Venv) -> None:
    """After pip install, `prunekit plugins --json` lists the plugin from its distribution with
    version 0.1.0, its hooks and every object it registered, without problems."""
    venv.ensure_installed()
    row = venv.plugin_rows().get("gradnorm")
    assert row is not None, "the entry point [project.entry-points.prunekit] gradnorm was not found"
    assert (row["distribution"], row["version"], row["builtin"], row["errors"]) == (
        DIST,
        "0.1.0",
        False,
        [],
    )
    assert row["registered"] == {
        "scorer": ["grad_norm"],
        "ratio_schedule": ["first_dense"],
        "sanity_check": ["sign_flip"],
        "method": ["grad_norm"],
    }
    assert "register_methods" in row["hooks"]  # type: ignore[operator]


def test_installed_method_is_listed(venv: Venv) -> None:
    """`prunekit list methods --json` shows the grad_norm recipe as coming from the plugin."""
    venv.ensure_installed()
    rows = json.loads(
        venv.prunekit("list", "methods", "--json", what="prunekit list methods").stdout
    )
    method = next((r for r in rows if r["name"] == "grad_norm"), None)
    assert method is not None and method["plugin"] == "gradnorm 0.1.0"


def test_plugin_own_tests_pass_with_the_conformance_kit(venv: Venv) -> None:
    """The example's tests (prunekit.testing through the pytest11 fixture) pass in the venv."""
    venv.ensure_installed()
    venv.run(
        venv.python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests",
        what="the example plugin's tests",
        timeout=180,
        cwd=venv.source,
    )


def test_bench_ranks_the_installed_method(venv: Venv) -> None:
    """`prunekit bench` on a narrowed quick grid runs grad_norm beside random_ticket and puts
    it in the results it prints."""
    venv.ensure_installed()
    help_ = venv.prunekit("bench", "--help", what="prunekit bench --help", check=False)
    if help_.returncode != 0 and "No such command 'bench'" in help_.stderr:
        pytest.skip("this checkout has no `prunekit bench` command yet")
    db = venv.work / "r.db"
    grid = "--suite quick --methods grad_norm,random_ticket --checks none --sparsities 0.9"
    done = venv.prunekit(
        "bench", "--all", *grid.split(), "--seeds", "0", "--db", str(db), "--json",
        what="prunekit bench on the installed plugin", timeout=300,
    )  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as err:
        pytest.fail(f"`prunekit bench --json` did not print JSON ({err}):\n{done.stdout[-2000:]}")
    assert db.is_file(), f"the results store {db} was not written"
    names = _strings(report)
    assert {"grad_norm", "random_ticket"} <= names, (
        "grad_norm or random_ticket is missing from the bench's JSON"
    )


def _strings(value: object) -> set[str]:
    """Every string in a JSON document, keys included (method names in a leaderboard or rows)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set(map(str, value)) | {s for item in value.values() for s in _strings(item)}
    if isinstance(value, list):
        return {s for item in value for s in _strings(item)}
    return set()


def test_uninstall_removes_the_plugin(venv: Venv) -> None:
    """After pip uninstall, `prunekit plugins --json` no longer lists the plugin, and nothing
    was installed into the outer environment."""
    venv.ensure_installed()
    venv.pip("uninstall", "-y", DIST, what=f"pip uninstall {DIST}")
    venv.installed = False
    rows = venv.plugin_rows()
    assert "gradnorm" not in rows and "prunekit_plugins.methods" in rows
    outer = subprocess.run(
        [sys.executable, "-m", "pip", "show", DIST],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    assert outer.returncode != 0, f"{DIST} is installed in the outer environment"
