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
from collections.abc import Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import pytest

from prunekit.bench.executors import Executor, LocalExecutor, Outcome
from prunekit.bench.grid import Filters, expand
from prunekit.bench.plan import CACHE_DIR
from prunekit.bench.records import ResultRow
from prunekit.bench.runner import run_bench
from prunekit.bench.store import ResultStore
from prunekit.bench.suite import load_suite, resolve_suite
from prunekit.cell import CellSpec, WorkerState
from prunekit.errors import PrunekitError
from prunekit.plugins import get_plugins
from tests.cli_runner import run_cli as run

TINY = """
name = "tiny"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.5, 0.8]
seeds = [0, 1]
methods = ["random_uniform", "magnitude_at_init", "snip"]
checks = ["none", "reinit"]
estimated_cell_seconds = 0.5

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


def _cells(db: Path) -> list[tuple[str, str, float | None, float | None]]:
    """(key, status, final accuracy, finished time) of every stored cell."""
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT key, status, final_accuracy, finished FROM cells").fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------------------ suites
def test_shipped_suites_load() -> None:
    """Every shipped suite is package data, registered and valid, with the papers' protocols and
    distinct fingerprints for distinct protocols."""
    shipped = {p.name for p in files("prunekit_plugins.suites").iterdir() if p.name.endswith(".toml")}
    expected = {"quick", "su2020_cifar10", "su2020_cifar100", "grasp2020_cifar10", "tiny_imagenet", "frankle2021_cifar10"}
    assert {f"{n}.toml" for n in expected} <= shipped
    assert expected <= set(get_plugins().registry("suite").names())
    su = resolve_suite("su2020_cifar10")
    assert (su.protocol.epochs, su.protocol.batch_size, su.protocol.lr, su.protocol.weight_decay) == (160, 64, 0.1, 1e-4)
    assert su.protocol.milestones == (0.5, 0.75) and su.published == "su2020_cifar10" and len(su.seeds) == 3
    assert su.sparsities == (0.9, 0.95, 0.98) and su.models == ("cifar_vgg19_bn", "cifar_resnet32")
    grasp = resolve_suite("grasp2020_cifar10")
    assert (grasp.protocol.batch_size, grasp.protocol.weight_decay) == (128, 5e-4) and "VGG19" in grasp.description
    assert resolve_suite("tiny_imagenet").protocol.epochs == 300
    frankle = resolve_suite("frankle2021_cifar10")
    assert frankle.checks == ("none", "layerwise_rearrange", "reinit", "score_inversion")
    assert {"snip", "grasp", "synflow", "magnitude_at_init", "random_uniform"} <= set(frankle.methods)
    quick = resolve_suite("quick")
    assert quick.dataset == "digits" and quick.device == "cpu" and quick.methods == quick.checks == "all"
    prints = {resolve_suite(n).fingerprint() for n in ("su2020_cifar10", "grasp2020_cifar10", "tiny_imagenet", "quick")}
    assert len(prints) == 4


def test_fingerprint_follows_the_protocol_only(suite_file: Path, tmp_path: Path) -> None:
    """The fingerprint changes with the training protocol and the scoring table, not with the
    grid (seeds, sparsities) or the description."""
    base = load_suite(suite_file).fingerprint()
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace("seeds = [0, 1]", "seeds = [5]").replace('name = "tiny"', 'name = "x"\ndescription = "y"'))
    assert load_suite(other).fingerprint() == base
    other.write_text(TINY.replace("epochs = 1", "epochs = 2"))
    assert load_suite(other).fingerprint() != base
    other.write_text(TINY + "\n[scoring]\nsamples_per_class = 2\n")
    assert load_suite(other).fingerprint() != base


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: 'colour = "red"\n' + t, r"unknown key 'colour' in suite .*bad\.toml"),
        (lambda t: t.replace("epochs = 1", "epochs = 1\nepochz = 2"), r"unknown key 'protocol\.epochz' in suite .*bad\.toml"),
        (lambda t: t + "\n[scoring]\nbatch = 3\n", r"unknown key 'scoring\.batch' in suite .*bad\.toml"),
        (lambda t: t.replace("sparsities = [0.5, 0.8]", "sparsities = [1.5]"), r"'sparsities' must be a non-empty list of numbers in \[0, 1\)"),
        (lambda t: t.replace("seeds = [0, 1]", 'seeds = ["a"]'), r"'seeds\[0\]' must be an integer, got 'a'"),
        (lambda t: t.replace("epochs = 1", 'epochs = "1"'), r"'protocol\.epochs' must be an integer, got '1'"),
        (lambda t: t.replace('lr_schedule = "cosine"', 'lr_schedule = "cosin"'), r"\[protocol\]: .*lr_schedule"),
        (lambda t: t.replace('checks = ["none", "reinit"]', 'checks = "some"'), r"'checks' must be \"all\" or a list"),
        (lambda t: 'device = "tpu"\n' + t, r"'device' must be \"cpu\" or \"cuda\""),
        (lambda t: t.replace('dataset = "digits"', ""), r"the key 'dataset' is missing"),
        (lambda t: t.replace("[protocol]", "[protocol"), r"is not valid TOML"),
    ],
)
def test_suite_validation_errors(change: Any, message: str, tmp_path: Path) -> None:
    """Unknown keys name the key and the file; a wrong type or value is one line naming the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text(change(TINY))
    with pytest.raises(PrunekitError, match=message) as info:
        load_suite(bad)
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------- grid
def test_grid_counts_and_skips(suite_file: Path) -> None:
    """The grid is methods × applicable checks × sparsities × seeds; the clean run is always in;
    a check that does not apply is listed as skipped with its reason, with the cells it would
    have had; dense runs once per (model, seed) at sparsity 0."""
    suite = load_suite(suite_file)
    grid = expand(suite, Filters(methods=["dense", "random_uniform", "magnitude_at_init", "snip"], checks=["random_labels"]))
    # snip uses data: none + random_labels; the data-free ones only none; dense once per seed
    assert len(grid.cells) == (2 + 1 + 1) * 2 * 2 + 2
    assert sorted((c.seed, c.sparsity) for c in grid.cells if c.method == "dense") == [(0, 0.0), (1, 0.0)]
    skipped = {(s.method, s.check) for s in grid.skipped}
    assert skipped == {("dense", "random_labels"), ("random_uniform", "random_labels"), ("magnitude_at_init", "random_labels")}
    assert all(s.reason for s in grid.skipped)
    assert len(grid.not_applicable) == 2 * 2 * 2 + 2
    assert not {(c.method, c.check) for c in grid.cells} & skipped
    narrowed = expand(suite, Filters(sparsities=[0.8, 0.8], seeds=[1]))
    assert len(narrowed.cells) == 3 * 2 and {(c.sparsity, c.seed) for c in narrowed.cells} == {(0.8, 1)}
    assert narrowed.estimate_seconds(0.5) == pytest.approx(3.0)


def test_all_partitions_every_method_and_check(suite_file: Path) -> None:
    """--all: every installed method × every installed check is either a cell or a skipped pair
    with a reason, never both and never missing."""
    plugins = get_plugins()
    grid = expand(load_suite(suite_file), Filters(everything=True, sparsities=[0.8], seeds=[0]))
    run = {(c.method, c.check) for c in grid.cells}
    skipped = {(s.method, s.check) for s in grid.skipped}
    every = {(m, c) for m in plugins.registry("method").names() for c in ["none", *plugins.registry("sanity_check").names()]}
    assert run | skipped == every and not run & skipped
    assert len(grid.cells) == len(run)


# ------------------------------------------------------------------------------- store
def _row(key: str, status: str = "done", acc: float | None = 0.5) -> ResultRow:
    return ResultRow(
        key=key, suite="s", model="m", dataset="d", method="snip", check="none", sparsity=0.9, seed=0,
        protocol="p", status=status, final_accuracy=acc, history=[{"epoch": 1.0}], layer_density={"a": 0.1},
        environment={"torch": "x"},
    )


def test_store_round_trip(tmp_path: Path) -> None:
    """Rows come back as written; mark_running then record keeps one row per key, its start time
    and the first-stored order; done_keys lists finished cells only."""
    with ResultStore(tmp_path / "r.db") as store:
        store.mark_running(_row("a", "running", None), _row("b", "running", None))
        started = store.times("a")[0]
        store.record(_row("a"))
        store.record(_row("b", "failed", None))
        assert [r.key for r in store.rows()] == ["a", "b"] and store.count() == 2
        assert store.rows(status="done") == [_row("a")]
        assert store.done_keys() == {"a"} and store.times("a")[0] == started
        assert store.times("a")[1] is not None and store.times("zz") == (None, None)
        assert store.rows(suite="other") == []


def test_resume_after_kill(suite_file: Path, tmp_path: Path) -> None:
    """Kill a bench mid-way; the re-run keeps every finished cell untouched (same metrics, same
    finish time, so not run again) and ends with each cell of the grid stored exactly once."""
    suite_file.write_text(TINY.replace("epochs = 1", "epochs = 3"))
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "prunekit.cli", "bench", "--suite", str(suite_file), "--db", str(db), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finished: list[tuple[str, str, float | None, float | None]] = []
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            finished = [c for c in _cells(db) if c[1] == "done"] if db.is_file() else []
        except sqlite3.OperationalError:  # the store is being created
            continue
        if len(finished) >= 3:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _cells(db)
    finished = [c for c in before if c[1] == "done"]
    assert 3 <= len(finished) < 24, "the run must be killed mid-way"
    assert any(s == "running" for _, s, _, _ in before)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = _cells(db)
    assert len(after) == 24 and len({k for k, _, _, _ in after}) == 24
    assert all(s == "done" for _, s, _, _ in after)
    assert set(finished) <= set(after), "finished cells kept with the same metrics and finish time"


def test_bench_runs_resumes_and_reports(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run records every cell once, writes reports beside the store and counts the cells; a
    second run reuses them all and changes nothing."""
    db = tmp_path / "r.db"
    argv = ["bench", "--suite", str(suite_file), "--db", str(db), "--json", "--seeds", "0", "--sparsities", "0.8"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert (summary["total"], summary["done"], summary["failed"], summary["reused"]) == (6, 6, 0, 0)
    cells = _cells(db)
    assert len(cells) == 6 and all(s == "done" for _, s, _, _ in cells)
    assert (tmp_path / "prunekit-report" / "report.md").is_file()
    row = ResultStore(db).rows()[0]
    assert row.environment["torch"] and row.environment["device"] == "cpu" and row.environment["plugins"]
    import torch

    assert row.environment["torch_threads"] == torch.get_num_threads()  # CPU results depend on it
    assert row.history and row.layer_density and row.protocol == load_suite(suite_file).fingerprint()
    code, out, _ = run(argv, capsys)
    assert code == 0
    summary = json.loads(out)["summary"]
    assert (summary["reused"], summary["ran"]) == (6, 0)
    assert sorted(_cells(db)) == sorted(cells)


def test_not_applicable_cells_are_stored_with_their_reason(suite_file: Path, tmp_path: Path) -> None:
    """Cells of checks that do not apply are never run: stored as not_applicable with the reason."""
    summary = run_bench(
        load_suite(suite_file), db=tmp_path / "r.db", progress=False,
        filters=Filters(methods=["random_uniform"], checks=["random_labels"], seeds=[0], sparsities=[0.5]),
    )
    assert (summary.total, summary.done, summary.not_applicable, summary.skipped_pairs) == (1, 1, 1, 1)
    (na,) = ResultStore(tmp_path / "r.db").rows(status="not_applicable")
    assert na.check == "random_labels" and "random" in (na.error or "") and na.final_accuracy is None


def test_failure_isolation(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A method whose scorer raises fails its own cells with the error; the others finish; the
    exit code is non-zero and the summary counts the failures."""
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "exploding.py").write_text(textwrap.dedent(RAISING))
    monkeypatch.setenv("PRUNEKIT_PLUGINS_DIR", str(plugin_dir))
    monkeypatch.delitem(sys.modules, "prunekit_local_plugins.exploding", raising=False)
    from prunekit.plugins import reset_plugins

    reset_plugins()
    db = tmp_path / "r.db"
    code, out, err = run(
        ["bench", "--suite", str(suite_file), "--db", str(db), "--methods", "exploding,random_uniform",
         "--checks", "none", "--seeds", "0,1", "--sparsities", "0.5", "--json"],
        capsys,
    )
    assert code == 1 and err.count("\n") == 1 and "2 of 4 cells failed" in err
    summary = json.loads(out)["summary"]
    assert (summary["done"], summary["failed"]) == (2, 2)
    store = ResultStore(db)
    failed = store.rows(status="failed")
    assert [r.method for r in failed] == ["exploding", "exploding"]
    assert all("scorer blew up" in (r.error or "") and "exploding" in (r.error or "") for r in failed)
    assert {r.method for r in store.rows(status="done")} == {"random_uniform"}
    monkeypatch.delitem(sys.modules, "prunekit_local_plugins.exploding", raising=False)


class _Dropping(Executor):
    """Returns nothing for the cells it is given (a broken back-end)."""

    name: ClassVar[str] = "dropping"
    description: ClassVar[str] = "drops every cell"

    def run(self, cells: Sequence[CellSpec], *, device: str, cache_dir: Path | None) -> Iterator[Outcome]:
        return iter(())


def test_cells_an_executor_drops_are_failed(suite_file: Path, tmp_path: Path) -> None:
    """A cell the executor never returns is recorded as failed (not left running, not silent)."""
    summary = run_bench(load_suite(suite_file), db=tmp_path / "r.db", executor=_Dropping(), progress=False)
    assert (summary.total, summary.failed, summary.done) == (24, 24, 0)
    assert all("returned no result" in (r.error or "") for r in ResultStore(tmp_path / "r.db").rows())


def test_dense_cache_shared_across_cells_and_runs(suite_file: Path, tmp_path: Path) -> None:
    """Pre-training is computed once per (model, data, protocol, seed): four lottery-family
    methods × two checks × two sparsities miss the dense cache once; a later bench in the same
    folder (a new store, a fresh worker state) reads it from disk and misses none."""
    suite = load_suite(suite_file)
    filters = Filters(methods=["lottery_ticket", "lr_rewinding", "hybrid_ticket", "random_reinit"], checks=["reinit"], seeds=[0])
    state = WorkerState()  # the worker's own state: tickets of other tests would skip the lookups
    summary = run_bench(suite, db=tmp_path / "a.db", filters=filters, executor=LocalExecutor(state=state), progress=False)
    assert (summary.done, summary.failed) == (16, 0)
    cache = state.dense_cache(str(tmp_path.resolve() / CACHE_DIR))
    assert cache.misses == 1 and cache.hits >= 1  # a ticket's reinit cell reuses the ticket itself
    assert len(list((tmp_path / CACHE_DIR).glob("dense-*.pt"))) == 1
    state = WorkerState()
    assert run_bench(suite, db=tmp_path / "b.db", filters=filters, executor=LocalExecutor(state=state), progress=False).done == 16
    cache = state.dense_cache(str(tmp_path.resolve() / CACHE_DIR))
    assert cache.misses == 0 and cache.hits >= 1


class _FakeSink:
    instances: ClassVar[list[_FakeSink]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.logged: list[ResultRow] = []
        self.finished: list[ResultRow] | None = None
        self.instances.append(self)

    def log_cell(self, row: ResultRow) -> None:
        self.logged.append(row)

    def finish(self, data: Any, out_dir: Path) -> None:
        self.finished = list(data.rows)


def test_wandb_sink_gets_every_cell(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--wandb: the sink is built with the options and the bench id, logs each run cell once and
    gets every row of the grid at the end."""
    import prunekit.bench.wandb_sink as wandb_sink

    monkeypatch.setattr(wandb_sink, "WandbSink", _FakeSink)
    monkeypatch.setattr(_FakeSink, "instances", [])
    code, _, err = run(
        ["bench", "--suite", str(suite_file), "--db", str(tmp_path / "r.db"), "--seeds", "0", "--sparsities", "0.5",
         "--checks", "none", "--wandb", "--wandb-mode", "offline", "--wandb-project", "p", "--json"],
        capsys,
    )
    assert code == 0, err
    (sink,) = _FakeSink.instances
    assert sink.kwargs["mode"] == "offline" and sink.kwargs["project"] == "p" and sink.kwargs["bench_id"]
    assert sorted(r.method for r in sink.logged) == ["magnitude_at_init", "random_uniform", "snip"]
    assert sink.finished is not None and {r.key for r in sink.finished} == {r.key for r in sink.logged}


def test_wandb_failure_stops_before_any_training(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A sink that cannot start (no wandb, no login) stops the bench with its one line before
    anything is trained or stored."""
    import prunekit.bench.wandb_sink as wandb_sink

    def refuse(**kwargs: Any) -> None:
        raise PrunekitError("W&B online mode needs a login")

    monkeypatch.setattr(wandb_sink, "WandbSink", refuse)
    code, _, err = run(["bench", "--suite", str(suite_file), "--db", str(tmp_path / "r.db"), "--wandb"], capsys)
    assert code == 1 and "needs a login" in err and err.count("\n") == 1
    assert not (tmp_path / "r.db").exists()


def test_dry_run_writes_nothing(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run prints the grid, the pairs that do not apply and the cost; it creates no store,
    no report and no cache."""
    db = tmp_path / "r.db"
    code, out, _ = run(["bench", "--suite", str(suite_file), "--db", str(db), "--dry-run", "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert len(payload["cells"]) == 24 and payload["estimated_seconds"] == pytest.approx(12.0)
    # the executor auto chose, and why: 12 s of cells do not repay starting worker processes
    assert payload["executor"] == "local" and "about 12 s of cells" in payload["executor_reason"]
    code, out, _ = run(["bench", "--suite", str(suite_file), "--db", str(db), "--dry-run", "--checks", "random_labels"], capsys)
    assert code == 0 and "16 cells" in out and "not applicable" in out and "random_uniform" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "snp"], "did you mean snip"),
        (["--checks", "reinitt"], "did you mean reinit"),
        (["--suite", "quik"], "unknown suite 'quik'; did you mean quick"),
        (["--suite", "{tmp}/nope.toml"], "cannot read suite file"),
        (["--suite", "{tmp}/empty.toml"], "the grid of suite 'empty' is empty"),
        (["--executor", "loacl"], "did you mean local"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--seeds", "a"], "list of integers"),
        (["--sparsities", "1.2"], "sparsity must be in [0, 1)"),
        (["--db", "{tmp}"], "is a directory"),
        (["--db", "{tmp}/missing/r.db"], "does not exist"),
        (["--db", "{tmp}/tiny.toml"], "file is not a database"),
        (["--db", "/proc/prunekit-results.db"], "cannot use /proc/prunekit-results.db as a results store"),
        (["--suite", "su2020_cifar10", "--data-root", "{tmp}", "--device", "cpu"], "cifar-10-batches-py"),
    ],
)
def test_bad_input_one_line_nothing_written(
    extra: list[str], message: str, suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad input: one line, non-zero exit, before any training; no cell in any store."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.toml").write_text(TINY.replace('name = "tiny"', 'name = "empty"').replace(
        'methods = ["random_uniform", "magnitude_at_init", "snip"]', "methods = []"))
    argv = ["bench", "--suite", str(suite_file), *[e.replace("{tmp}", str(tmp_path)) for e in extra]]
    code, _, err = run(argv, capsys)
    assert code == 1
    assert err.count("\n") == 1 and message in err, err
    db = tmp_path / "prunekit-results.db"
    assert not db.exists() and not (tmp_path / CACHE_DIR).exists() and not (tmp_path / "prunekit-report").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_refused(suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store in a folder we cannot write: one line before any training."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = run(["bench", "--suite", str(suite_file), "--db", str(folder / "r.db")], capsys)
    finally:
        folder.chmod(0o700)
    assert code == 1 and "is not writable" in err and err.count("\n") == 1


COUNTING = '''
import os
from typing import ClassVar
import attrs, torch
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import Method, Scorer

@attrs.frozen
class Counting(Scorer):
    name: ClassVar[str] = "counting"
    description: ClassVar[str] = "random scores; logs every call"
    needs_data: ClassVar[bool] = False
    def score(self, model, ctx):
        with open(os.environ["COUNTING_LOG"], "a") as log:
            log.write(f"{ctx.seed} {os.getpid()}\\n")
        return {l.name: torch.rand(l.shape, generator=ctx.generator(l.name)) for l in ctx.layers}

@hookimpl
def register_scorers(register):
    register(Counting)

@hookimpl
def register_methods(register):
    register(Method(name="counting", description="logs", family="random", scorer="counting"))
'''


def test_two_benches_on_one_store_run_each_cell_once(suite_file: Path, tmp_path: Path) -> None:
    """Two `prunekit bench` processes started together on one store: every cell is computed by
    exactly one of them (the other skips or waits for cells a live bench holds), both exit 0
    and the store holds each cell once, done."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "counting.py").write_text(COUNTING)
    suite_file.write_text(
        TINY.replace('methods = ["random_uniform", "magnitude_at_init", "snip"]', 'methods = ["counting"]')
        .replace('checks = ["none", "reinit"]', 'checks = ["none"]')
        .replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3, 4, 5]")
    )
    db, log = tmp_path / "r.db", tmp_path / "calls.log"
    env = {**os.environ, "PRUNEKIT_PLUGINS_DIR": str(plugins), "COUNTING_LOG": str(log)}
    cmd = [sys.executable, "-m", "prunekit.cli", "bench", "--suite", str(suite_file), "--db", str(db), "--json"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    # generous: two bench processes on a loaded 2-core machine
    errors = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    calls = log.read_text().split()
    from collections import Counter

    assert Counter(calls[0::2]) == {str(seed): 2 for seed in range(6)}, calls  # 2 sparsities each
    cells = _cells(db)
    assert len(cells) == 12 and all(s == "done" for _, s, _, _ in cells)


def test_a_diverged_run_is_a_status_not_a_result(
    suite_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """lr = 1e4: every cell's training blows up; the bench exits 0 (a method that diverges is a
    finding), the cells are stored as `diverged` with the step, reused on a second run, and no
    method is ranked from them."""
    suite_file.write_text(
        TINY.replace("lr = 0.05", "lr = 1e4")
        .replace('methods = ["random_uniform", "magnitude_at_init", "snip"]', 'methods = ["random_uniform"]')
        .replace('checks = ["none", "reinit"]', 'checks = ["none"]')
        .replace("seeds = [0, 1]", "seeds = [0]")
        .replace("sparsities = [0.5, 0.8]", "sparsities = [0.8]")
    )
    db = tmp_path / "r.db"
    code, out, err = run(["bench", "--suite", str(suite_file), "--db", str(db), "--json"], capsys)
    assert code == 0, err
    payload = json.loads(out)
    assert payload["summary"]["diverged"] == 1 and payload["summary"]["failed"] == 0
    with ResultStore(db, create=False) as store:
        (row,) = store.rows()
    assert row.status == "diverged" and row.error is not None and "step" in row.error
    assert not [r for r in payload["leaderboard"] if r.get("method") == "random_uniform" and r.get("n")]
    code, out, err = run(["bench", "--suite", str(suite_file), "--db", str(db), "--json"], capsys)
    assert code == 0 and json.loads(out)["summary"]["ran"] == 0


def test_auto_executor_starts_workers_for_a_long_grid_only(suite_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--executor auto runs a grid estimated at a minute or more in worker processes, one per
    core (or as many as --jobs, never more than cells); it keeps cells in this process for a
    short grid, an unknown cost, one core, --jobs 1, live W&B runs and plugins registered at
    runtime (workers would not have them). An --until-decided round is chosen for again."""
    import types

    import attrs

    import prunekit.bench.executors as executors_module
    from prunekit.bench.plan import choose_executor, plan_bench
    from prunekit.plugins import register_plugin, unregister_plugin

    monkeypatch.setattr(executors_module, "cpu_cores", lambda: 4)
    short = load_suite(suite_file)  # 24 cells estimated at 0.5 s: 12 s
    cells = expand(short, Filters()).cells
    long = attrs.evolve(short, estimated_cell_seconds=10.0)  # 240 s
    chosen = choose_executor(long, cells, "cpu")
    assert (chosen.name, chosen.jobs) == ("processes", 4) and "(4 workers, one per CPU core," in chosen.reason
    assert (choose_executor(long, cells, "cpu", jobs=2).jobs, choose_executor(long, cells[:7], "cpu").jobs) == (2, 4)
    assert choose_executor(attrs.evolve(long, estimated_cell_seconds=30.0), cells[:3], "cpu").jobs == 3
    for suite, options, why in [
        (short, {}, "about 12 s of cells"),
        (attrs.evolve(long, estimated_cell_seconds=None), {}, "gives no estimated_cell_seconds"),
        (long, {"jobs": 1}, "--jobs 1"),
        (long, {"live": True}, "W&B"),
    ]:
        local = choose_executor(suite, cells, "cpu", **options)
        assert (local.name, local.jobs) == ("local", 1) and why in local.reason, local.reason
    register_plugin(types.SimpleNamespace(), "notebook_plugin")
    try:
        assert "'notebook_plugin' was registered at runtime" in choose_executor(long, cells, "cpu").reason
    finally:
        unregister_plugin("notebook_plugin")
    monkeypatch.setattr(executors_module, "cpu_cores", lambda: 1)
    assert choose_executor(long, cells, "cpu").reason == "local (one CPU core)"

    monkeypatch.setattr(executors_module, "cpu_cores", lambda: 2)
    plan = plan_bench(long, db=tmp_path / "r.db", executor="auto")
    assert (plan.executor.name, plan.executor.jobs) == ("processes", 2)
    again = plan.with_cells(cells[:4])  # 40 s: this process
    assert isinstance(again.executor, LocalExecutor) and again.choice is not None and "40 s" in again.choice.reason
    named = plan_bench(long, db=tmp_path / "r.db", executor="processes")
    assert named.choice is None and named.executor.jobs == 2  # --jobs left out: one worker per core
    assert named.with_cells(cells[:4]).executor is named.executor  # a named executor stays
