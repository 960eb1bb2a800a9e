"""`prunekit bench`: suites, grid, store, resume after a kill, failure isolation, bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prunekit.bench.grid import expand
from prunekit.bench.store import ResultStore
from prunekit.bench.suite import load_suite, resolve_suite
from prunekit.errors import PrunekitError
from tests.cli_runner import run_cli as run

TINY = """
name = "tiny"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.5, 0.8]
seeds = [0, 1]
methods = ["random_uniform", "magnitude_at_init", "snip"]
checks = ["none", "reinit"]
cell_seconds = 0.5

[protocol]
epochs = 1
batch_size = 128
lr = 0.05
lr_schedule = "cosine"
"""

RAISING = '''
import attrs
from typing import ClassVar
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import Method, Scorer

@attrs.frozen
class Exploding(Scorer):
    name: ClassVar[str] = "exploding"
    description: ClassVar[str] = "raises"
    needs_data: ClassVar[bool] = False
    def score(self, model, ctx):
        raise RuntimeError("scorer blew up")

@hookimpl
def register_scorers(register):
    register(Exploding)

@hookimpl
def register_methods(register):
    register(Method(name="exploding", description="raises", family="initial", scorer="exploding"))
'''


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path




def _cells(db: Path) -> list[tuple[str, str, float | None]]:
    con = sqlite3.connect(db)
    try:
        return con.execute('SELECT key, status, final_accuracy FROM cells').fetchall()
    finally:
        con.close()


def test_grid_counts_and_skips(suite_file: Path) -> None:
    """The grid is methods × applicable checks × sparsities × seeds; the clean run is always in;
    a check that does not apply is listed as skipped with a reason."""
    suite = load_suite(suite_file)
    grid = expand(suite, checks=["random_labels"])
    # snip uses data: none + random_labels; the data-free ones only none
    assert len(grid.cells) == (2 + 1 + 1) * 2 * 2
    skipped = {(s.method, s.check) for s in grid.skipped}
    assert skipped == {("random_uniform", "random_labels"), ("magnitude_at_init", "random_labels")}
    assert all("does not use data" in s.reason or "applies to" in s.reason for s in grid.skipped)


def test_suite_validation_errors(tmp_path: Path) -> None:
    """Unknown keys name the key and the file; bad values one line; unknown names suggest."""
    bad = tmp_path / "bad.toml"
    bad.write_text('colour = "red"\n' + TINY)
    with pytest.raises(PrunekitError, match=r"unknown key 'colour' in suite .*bad.toml"):
        load_suite(bad)
    bad.write_text(TINY.replace("epochs = 1", "epochs = 1\nepochz = 2"))
    with pytest.raises(PrunekitError, match=r"unknown key 'protocol.epochz'"):
        load_suite(bad)
    bad.write_text(TINY.replace("sparsities = [0.5, 0.8]", "sparsities = [1.5]"))
    with pytest.raises(PrunekitError, match=r"invalid suite .*sparsity 1.5"):
        load_suite(bad)
    with pytest.raises(PrunekitError, match="did you mean quick"):
        resolve_suite("quik")
    with pytest.raises(PrunekitError, match="did you mean snip"):
        expand(resolve_suite("quick"), methods=["snp"])


def test_shipped_suites_load() -> None:
    """Every shipped suite is registered and valid, with distinct protocol fingerprints for the
    two CIFAR protocols."""
    from prunekit.plugins import get_plugins

    names = get_plugins().registry("suite").names()
    assert {"quick", "su2020_cifar10", "su2020_cifar100", "grasp2020_cifar10", "tiny_imagenet", "frankle2021_cifar10"} <= set(names)
    assert resolve_suite("su2020_cifar10").fingerprint() != resolve_suite("grasp2020_cifar10").fingerprint()
    assert resolve_suite("su2020_cifar10").protocol.epochs == 160


def test_bench_runs_resumes_and_reports(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run records every cell once and writes reports; a second run reuses them all."""
    db = tmp_path / "r.db"
    argv = ["bench", "--suite", str(suite_file), "--db", str(db), "--json", "--seeds", "0", "--sparsities", "0.8"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["summary"]["done"] == 6 and payload["summary"]["failed"] == 0
    cells = _cells(db)
    assert len(cells) == 6 and all(s == "done" for _, s, _ in cells)
    assert (tmp_path / "prunekit-report" / "report.md").is_file()
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert json.loads(out)["summary"]["reused"] == 6 and json.loads(out)["summary"]["ran"] == 0
    assert sorted(_cells(db)) == sorted(cells)


def test_resume_after_kill(suite_file: Path, tmp_path: Path) -> None:
    """Kill a bench mid-way; the re-run keeps every finished cell and ends with each cell once."""
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "prunekit.cli", "bench", "--suite", str(suite_file), "--db", str(db)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished: list[tuple[str, str, float | None]] = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.is_file():
            try:
                finished = [c for c in _cells(db) if c[1] == "done"]
            except sqlite3.OperationalError:
                continue
            if len(finished) >= 3:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= len(finished) < 24, "the run must be killed mid-way"
    finished = [c for c in _cells(db) if c[1] == "done"]
    assert any(s == "running" for _, s, _ in _cells(db))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = _cells(db)
    assert len(after) == 24 and len({k for k, _, _ in after}) == 24
    assert all(s == "done" for _, s, _ in after)
    assert set(finished) <= set(after), "finished cells kept with the same metrics"


def test_failure_isolation(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A method whose scorer raises fails its own cells with the error; the others finish; the
    exit code is non-zero and the summary counts the failures."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "exploding.py").write_text(textwrap.dedent(RAISING))
    monkeypatch.setenv("PRUNEKIT_PLUGINS_DIR", str(plugin_dir))
    from prunekit.plugins import reset_plugins

    reset_plugins()
    db = tmp_path / "r.db"
    code, out, err = run(
        ["bench", "--suite", str(suite_file), "--db", str(db), "--methods", "exploding,random_uniform",
         "--checks", "none", "--seeds", "0", "--sparsities", "0.5"],
        capsys,
    )
    assert code == 1 and "1 of 2 cells failed" in err
    store = ResultStore(db)
    failed = store.rows(status="failed")
    assert [r.method for r in failed] == ["exploding"] and "scorer blew up" in (failed[0].error or "")
    assert {r.method for r in store.rows(status="done")} == {"random_uniform"}
    sys.modules.pop("prunekit_local_plugins.exploding", None)


def test_dry_run_writes_nothing(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints the grid and its cost and creates no store."""
    db = tmp_path / "r.db"
    code, out, _ = run(["bench", "--suite", str(suite_file), "--db", str(db), "--dry-run", "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert len(payload["cells"]) == 24 and payload["estimated_seconds"] == pytest.approx(12.0)
    assert not db.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "snp"], "did you mean snip"),
        (["--checks", "reinitt"], "did you mean reinit"),
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--methods", "random_uniform", "--checks", "none", "--seeds", "0", "--sparsities", "0.5", "--db", "{tmp}"], "is a directory"),
        (["--db", "{tmp}/missing/r.db"], "does not exist"),
        (["--suite", "su2020_cifar10", "--data-root", "{tmp}", "--device", "cpu"], "cifar-10-batches-py"),
        (["--sparsities", "1.2"], "sparsity must be in [0, 1)"),
    ],
)
def test_bad_input_one_line_nothing_written(
    extra: list[str], message: str, suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad input: one line, non-zero exit, no cell rows in the store."""
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "--suite", str(suite_file), *[e.replace("{tmp}", str(tmp_path)) for e in extra]]
    code, _, err = run(argv, capsys)
    assert code != 0
    assert err.strip().count("\n") == 0 and message in err, err
    db = tmp_path / "prunekit-results.db"
    assert not db.exists() or ResultStore(db).count() == 0
