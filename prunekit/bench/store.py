"""The results store: SQLite (WAL), one row per cell keyed by a content hash.

Only the benchmark driver writes it. A cell is marked ``running`` when dispatched and its row
is replaced by its result when it arrives, each in one transaction, so a killed run leaves
``running`` rows that the next run re-runs, and no cell is ever recorded twice. Tables:

- ``cells``: the columns of :class:`~prunekit.bench.records.ResultRow` (``layer_density``,
  ``history``, ``environment`` and ``instruments`` as JSON) plus ``started`` / ``finished`` (Unix time);
- ``benches``: one row per ``prunekit bench`` run (id, suite, start, argv, plugin versions);
- ``meta``: the schema version.

The file is marked as prunekit's (SQLite's ``application_id``). Before writing anything the store
checks that a file it is given is empty, or a prunekit store of this or an older schema: another
application's SQLite file, a ``cells`` table of another shape or a store from a newer prunekit is
refused in one line and left byte-identical. Readers (``prunekit report``, ``prunekit status``)
open it read-only and never change its bytes, so a store on read-only media can be reported.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from prunekit.bench.records import ResultRow
from prunekit.errors import PrunekitError
from prunekit.validate import on_pseudo_fs

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_DB = "prunekit-results.db"
# 2: started/finished timestamps; 3: mask hash, dense accuracy, ties, warnings, spec, identity,
# application_id (columns are added to older stores when a writer opens them; the instruments
# column, JSON, came later without a new version: a store without it reads it as {})
SCHEMA_VERSION = 3
APPLICATION_ID = 0x50524B54  # "PRKT"
_JSON = ("layer_density", "history", "environment", "warnings", "spec", "identity", "instruments")
_JSON_EMPTY: dict[str, Any] = {"history": [], "warnings": []}
_REQUIRED = ("key", "suite", "status")  # columns every prunekit store had
_COLUMNS = [f.name for f in attrs.fields(ResultRow)]
_QUOTED = ", ".join(f'"{c}"' for c in _COLUMNS)  # "check" is an SQL keyword
_TIMES = ("started", "finished", "owner")  # owner: "host:pid:bench_id" of the run that claimed it

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS benches (
    bench_id TEXT PRIMARY KEY, suite TEXT, started REAL, argv TEXT, plugins TEXT, settings TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    {", ".join(('"key" TEXT PRIMARY KEY' if c == "key" else f'"{c}"') for c in _COLUMNS)},
    started REAL, finished REAL, owner TEXT
);
CREATE INDEX IF NOT EXISTS cells_suite ON cells (suite, status);
"""


def check_db_path(path: str | Path) -> Path:
    """Refuse, in one line, a store path that cannot be a file we write (before any work)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise PrunekitError(f"results store {path} is a directory; pass a file path with --db")
    parent = path.parent
    if not parent.is_dir():
        raise PrunekitError(
            f"the folder {parent} of results store {path} does not exist; create it or choose another --db"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise PrunekitError(f"results store {path} is not writable; choose another --db")
    if not path.exists() and on_pseudo_fs(parent):
        raise PrunekitError(f"cannot use {path} as a results store ({parent} takes no new files); choose another --db")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise PrunekitError(f"cannot create results store {path}: the folder {parent} is not writable")
    return path


class ResultStore:
    """The SQLite file of one or more benchmark runs.

    ``create=False`` opens an existing store read-only (for readers such as ``prunekit report``):
    nothing is written, not even the journal mode.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = check_db_path(path) if create else Path(path).expanduser()
        self.readonly = not create
        if not create and not self.path.is_file():
            raise PrunekitError(f"no results store at {self.path}; run `prunekit bench` first")
        self._db: sqlite3.Connection | None = None
        try:
            if create:
                self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
                _set_up(self._db, self.path)
            else:
                self._db = _connect_readonly(self.path)
                _check_owned(self._db, self.path, reading=True)
        except sqlite3.DatabaseError as err:
            self.close()
            raise PrunekitError(f"cannot use {self.path} as a results store ({err}); choose another --db") from None
        except PrunekitError:
            self.close()
            raise

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise PrunekitError(f"the results store {self.path} is closed")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- writing (the driver only) --------------------------------------------------------
    def start_bench(
        self,
        bench_id: str,
        suite: str,
        argv: list[str],
        plugins: dict[str, str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one ``prunekit bench`` run (``settings``: how its verdicts are to be read,
        e.g. the sequential design of ``--until-decided``)."""
        self.db.execute(
            "INSERT OR REPLACE INTO benches (bench_id, suite, started, argv, plugins, settings) VALUES (?, ?, ?, ?, ?, ?)",
            (
                bench_id, suite, time.time(), json.dumps(argv), json.dumps(plugins, sort_keys=True),
                json.dumps(dict(settings or {}), sort_keys=True),
            ),
        )  # fmt: skip

    def bench_settings(self, suite: str) -> dict[str, Any]:
        """The settings of the latest bench of ``suite`` ({} when none were recorded)."""
        if "settings" not in {r[1] for r in self.db.execute("PRAGMA table_info(benches)")}:
            return {}
        found = self.db.execute(
            "SELECT settings FROM benches WHERE suite = ? ORDER BY started DESC LIMIT 1", (suite,)
        ).fetchone()
        return json.loads(found[0]) if found and found[0] else {}

    def mark_running(self, *rows: ResultRow, owner: str | None = None) -> None:
        """Mark cells dispatched (status ``running``, start time now), in one transaction."""
        self._upsert(rows, started_now=True, finished_now=False, owner=owner)

    def claim(
        self,
        rows: Sequence[ResultRow],
        *,
        owner: str,
        finished: Collection[str],
        alive: Callable[[str], bool],
    ) -> tuple[list[ResultRow], list[ResultRow]]:
        """Mark running, in one transaction, the cells of ``rows`` that nobody else holds.

        Returns (claimed, held elsewhere). A cell whose status is in ``finished`` is neither; a
        cell ``running`` under another owner for whom ``alive(owner)`` holds is held elsewhere
        (two benches on one store never run a cell twice); anything else is claimed by ``owner``.
        """
        db = self.db
        claimed: list[ResultRow] = []
        elsewhere: list[ResultRow] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                found = db.execute("SELECT status, owner FROM cells WHERE key = ?", (row.key,)).fetchone()
                if found is not None and found[0] in finished:
                    continue
                if found is not None and found[0] == "running" and found[1] and found[1] != owner and alive(found[1]):
                    elsewhere.append(row)
                    continue
                claimed.append(row)
            self._write(claimed, started_now=True, finished_now=False, owner=owner)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return claimed, elsewhere

    def record(self, *rows: ResultRow) -> None:
        """Insert or replace the rows of these keys (results, failures, not applicable), in one
        transaction; a cell marked running keeps its start time and owner."""
        self._upsert(rows, started_now=False, finished_now=True)

    def _upsert(
        self, rows: Iterable[ResultRow], *, started_now: bool, finished_now: bool, owner: str | None = None
    ) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._write(rows, started_now=started_now, finished_now=finished_now, owner=owner)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _write(
        self, rows: Iterable[ResultRow], *, started_now: bool, finished_now: bool, owner: str | None
    ) -> None:
        now = time.time()
        columns = [*_COLUMNS, *_TIMES]
        names = ", ".join(f'"{c}"' for c in columns)
        placeholders = ", ".join("?" for _ in columns)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in _COLUMNS if c != "key")
        started = "excluded.started" if started_now else "COALESCE(cells.started, excluded.started)"
        sql = (
            f"INSERT INTO cells ({names}) VALUES ({placeholders}) ON CONFLICT(key) DO UPDATE SET "
            f"{updates}, started = {started}, finished = excluded.finished, "
            "owner = COALESCE(excluded.owner, cells.owner)"
        )
        for row in rows:
            values = [json.dumps(getattr(row, c), sort_keys=True) if c in _JSON else getattr(row, c) for c in _COLUMNS]
            self.db.execute(sql, [*values, now, now if finished_now else None, owner])

    # --- reading ----------------------------------------------------------------------------
    def statuses(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """key -> status, of every cell or of ``keys``."""
        rows = self.db.execute("SELECT key, status FROM cells").fetchall()
        wanted = set(keys) if keys is not None else None
        return {k: s for k, s in rows if wanted is None or k in wanted}

    def done_keys(self) -> set[str]:
        return {k for k, s in self.statuses().items() if s == "done"}

    def rows(self, suite: str | None = None, status: str | None = None) -> list[ResultRow]:
        """The cells (optionally of one suite, one status) in the order they were first stored.
        Columns an older store lacks read as their defaults."""
        have = _columns(self.db)
        present = [c for c in _COLUMNS if c in have]
        query, args = "SELECT " + ", ".join(f'"{c}"' for c in present) + " FROM cells", []
        where = []
        if suite is not None:
            where.append("suite = ?")
            args.append(suite)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY rowid"
        out = []
        for values in self.db.execute(query, args).fetchall():
            d = dict(zip(present, values))
            for c in _JSON:
                if c in d:
                    d[c] = json.loads(d[c]) if d[c] else _JSON_EMPTY.get(c, {})
            out.append(ResultRow(**d))
        return out

    def schema(self) -> int:
        """The schema version this store was written with (0 when it has none)."""
        found = self.db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        return int(found[0]) if found else 0

    def times(self, key: str) -> tuple[float | None, float | None]:
        """(started, finished) of one cell, Unix time (None where unknown)."""
        found = self.db.execute("SELECT started, finished FROM cells WHERE key = ?", (key,)).fetchone()
        return (found[0], found[1]) if found else (None, None)

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM cells").fetchone()[0])


def _set_up(db: sqlite3.Connection, path: Path) -> None:
    """Check that ``path`` is ours and bring its schema up to date, as one transaction.

    Benches started together on one new file each run this: the write lock is taken before the
    check, so one sets the file up whole while the others wait, and none ever sees a half-made
    store (a ``meta`` table without ``cells``) and refuses it as foreign.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        _check_owned(db, path)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        have = _columns(db)
        for column in (*_COLUMNS, *_TIMES):
            if column not in have:  # a store written by an older prunekit
                db.execute(f'ALTER TABLE cells ADD COLUMN "{column}"')
        if "settings" not in {r[1] for r in db.execute("PRAGMA table_info(benches)")}:
            db.execute("ALTER TABLE benches ADD COLUMN settings TEXT")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    _use_wal(db)


def _use_wal(db: sqlite3.Connection, wait: float = 30.0) -> None:
    """Switch the file to WAL (outside a transaction, as SQLite requires). The switch needs the
    file to itself and SQLite does not wait for it, so while another process sets up the same
    new store this waits, up to ``wait`` seconds, like every other statement here."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _columns(db: sqlite3.Connection) -> set[str]:
    return {r[1] for r in db.execute("PRAGMA table_info(cells)")}


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes: not the store, and no lock files beside it.

    While a writer is at work its ``-wal`` file exists, and the reader shares it (read-only) to
    see a consistent state; otherwise the file is read as immutable, which creates nothing
    beside it (so a store on read-only media, or one another user owns, can be reported).
    """
    uri = path.resolve().as_uri()
    if Path(f"{path}-wal").exists():
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


def _check_owned(db: sqlite3.Connection, path: Path, *, reading: bool = False) -> None:
    """Refuse, before any write, a file that is not an empty file or a prunekit store this
    version can use (one line naming what it is)."""
    app = int(db.execute("PRAGMA application_id").fetchone()[0])
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    foreign = f"{path} is not a prunekit results store"
    if app not in (0, APPLICATION_ID):
        raise PrunekitError(f"{foreign} (it belongs to another application); choose another --db")
    if not tables:
        if reading:
            raise PrunekitError(f"{foreign} (it is empty); run `prunekit bench` first")
        return  # a new (or empty) file: ours to set up
    if "cells" not in tables or "meta" not in tables:
        raise PrunekitError(
            f"{foreign} (it has tables {', '.join(sorted(tables)) or 'none'}, no cells/meta); choose another --db"
        )
    missing = [c for c in _REQUIRED if c not in _columns(db)]
    if missing:
        raise PrunekitError(
            f"{foreign}: its cells table has another schema (no {', '.join(missing)} column); choose another --db"
        )
    found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if found is None:
        raise PrunekitError(f"{foreign} (its meta table has no schema version); choose another --db")
    try:
        schema = int(found[0])
    except ValueError:
        raise PrunekitError(f"{foreign} (schema version {found[0]!r})") from None
    if schema > SCHEMA_VERSION:
        raise PrunekitError(
            f"{path} was written by a newer prunekit (store schema {schema}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade prunekit or choose another --db"
        )
