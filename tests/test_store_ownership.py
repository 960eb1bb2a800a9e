"""The results store writes only files it owns, and readers never write."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from prunekit.bench.records import ResultRow
from prunekit.bench.store import SCHEMA_VERSION, ResultStore
from prunekit.errors import PrunekitError
from tests.cli_runner import run_cli


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _row(key: str) -> ResultRow:
    return ResultRow(
        key=key, suite="s", model="digits_mlp", dataset="digits", method="snip", check="none",
        sparsity=0.9, seed=0, protocol="p", status="done", final_accuracy=0.9, best_accuracy=0.9,
    )  # fmt: skip


def _foreign(path: Path, sql: str) -> Path:
    db = sqlite3.connect(path)
    db.executescript(sql)
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes VALUES (1, 'hello');",
        "CREATE TABLE cells (id INTEGER, payload BLOB); CREATE TABLE meta (k TEXT, v TEXT);",
        "PRAGMA application_id = 1234; CREATE TABLE x (y);",
    ],
    ids=["other-application", "cells-of-another-schema", "foreign-application-id"],
)
def test_foreign_sqlite_file_is_refused_and_left_byte_identical(tmp_path: Path, sql: str) -> None:
    """Another application's SQLite file (or a cells table of another shape) is refused in one
    line before anything is written: its bytes do not change."""
    path = _foreign(tmp_path / "other.db", sql)
    before = _sha(path)
    with pytest.raises(PrunekitError, match="not a prunekit results store"):
        ResultStore(path)
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_store_from_a_newer_prunekit_is_refused(tmp_path: Path) -> None:
    """A store whose schema is newer than this prunekit reads is refused, unchanged."""
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        store.record(_row("a"))
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = _sha(path)
    with pytest.raises(PrunekitError, match="newer prunekit"):
        ResultStore(path)
    assert _sha(path) == before


def test_a_non_database_file_is_refused(tmp_path: Path) -> None:
    """A text file given as --db is refused in one line and left as it was."""
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    with pytest.raises(PrunekitError, match="cannot use"):
        ResultStore(path)
    assert path.read_text() == "not a database\n" * 100


def test_store_of_an_older_schema_is_upgraded(tmp_path: Path) -> None:
    """A store written by the first prunekit (schema 2, no application id, no identity
    columns) opens, gains the new columns and keeps its rows."""
    path = tmp_path / "old.db"
    columns = ", ".join(
        f'"{c}"' for c in ("key", "suite", "model", "dataset", "method", "check", "sparsity", "seed",
                           "protocol", "status", "final_accuracy")
    )  # fmt: skip
    _foreign(
        path,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        f"CREATE TABLE cells ({columns}, started REAL, finished REAL);"
        "INSERT INTO cells VALUES ('k', 's', 'digits_mlp', 'digits', 'snip', 'none', 0.9, 0, 'p', 'done', 0.5, 0, 1);",
    )
    with ResultStore(path) as store:
        (row,) = store.rows()
        assert (row.key, row.final_accuracy, row.mask_hash, row.identity) == ("k", 0.5, None, {})
        assert store.schema() == SCHEMA_VERSION


def test_report_leaves_the_store_byte_identical_and_reads_a_read_only_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`prunekit report` opens the store read-only: the file's bytes do not change, and a copy
    in a read-only folder (no -wal/-shm can be made there) is reported too."""
    path = tmp_path / "r.db"
    with ResultStore(path) as store:
        store.record(_row("a"), _row("b"))
    before = _sha(path)
    code, _, err = run_cli(["report", "--db", str(path), "--out", str(tmp_path / "rep"), "--no-plots"], capsys)
    assert code == 0, err
    assert _sha(path) == before
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copy(path, folder / "r.db")
    os.chmod(folder / "r.db", stat.S_IRUSR)
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        with ResultStore(folder / "r.db", create=False) as store:
            assert [r.key for r in store.rows()] == ["a", "b"]
        assert _sha(folder / "r.db") == before
        assert sorted(p.name for p in folder.iterdir()) == ["r.db"]
    finally:
        os.chmod(folder, stat.S_IRWXU)


def _open_at(path: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        ResultStore(path).close()
        results.put("ok")  # type: ignore[attr-defined]
    except PrunekitError as err:
        results.put(str(err))  # type: ignore[attr-defined]


def test_benches_creating_one_new_store_together_all_open_it(tmp_path: Path) -> None:
    """Six processes open the same new file at once, twenty times over: each one sets it up or
    finds it set up. None sees a half-made store (a meta table without cells, or no schema
    version yet) and refuses it as foreign, and none fails on the switch to WAL."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    failures = []
    for attempt in range(20):
        path = str(tmp_path / f"s{attempt}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
        failures += [o for o in outcomes if o != "ok"]
        with ResultStore(path, create=False) as store:
            assert store.schema() == SCHEMA_VERSION and store.count() == 0
    assert failures == []
