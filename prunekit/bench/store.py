"""The results store: SQLite (WAL), one row per cell keyed by a content hash.

Only the benchmark driver writes it. A cell is marked ``running`` when dispatched and replaced
by its result when it arrives, in one transaction, so a killed run leaves ``running`` rows that
the next run re-runs, and no cell is ever recorded twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from prunekit.bench.records import ResultRow
from prunekit.errors import PrunekitError

DEFAULT_DB = "prunekit-results.db"
SCHEMA_VERSION = 1
_JSON = ("layer_density", "history", "environment")
_COLUMNS = [f.name for f in attrs.fields(ResultRow)]
_QUOTED = ", ".join(f'"{c}"' for c in _COLUMNS)  # "check" is an SQL keyword

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS benches (
    bench_id TEXT PRIMARY KEY, suite TEXT, started REAL, argv TEXT, plugins TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    {", ".join(('"key" TEXT PRIMARY KEY' if c == "key" else f'"{c}"') for c in _COLUMNS)},
    updated REAL
);
CREATE INDEX IF NOT EXISTS cells_suite ON cells (suite, status);
"""


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise PrunekitError(f"results store {path} is a directory; pass a file path with --db")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PrunekitError(f"the folder {parent} of results store {path} does not exist; create it or choose another --db")


class ResultStore:
    """The SQLite file of one or more benchmark runs."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        _check_path(self.path)
        if not create and not self.path.is_file():
            raise PrunekitError(f"no results store at {self.path}; run `prunekit bench` first")
        try:
            self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as err:
            raise PrunekitError(f"cannot use {self.path} as a results store ({err}); choose another --db") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing (the driver only) --------------------------------------------------------
    def start_bench(self, bench_id: str, suite: str, argv: list[str], plugins: dict[str, str]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO benches VALUES (?, ?, ?, ?, ?)",
            (bench_id, suite, time.time(), json.dumps(argv), json.dumps(plugins, sort_keys=True)),
        )

    def record(self, row: ResultRow) -> None:
        """Insert or replace the row of ``row.key`` (one transaction)."""
        values = [json.dumps(getattr(row, c), sort_keys=True) if c in _JSON else getattr(row, c) for c in _COLUMNS]
        placeholders = ", ".join("?" for _ in range(len(_COLUMNS) + 1))
        with self._transaction():
            self._db.execute(
                f"INSERT OR REPLACE INTO cells ({_QUOTED}, updated) VALUES ({placeholders})",
                [*values, time.time()],
            )

    def _transaction(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: object, *rest: object) -> None:
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    # --- reading ----------------------------------------------------------------------------
    def statuses(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        rows = self._db.execute("SELECT key, status FROM cells").fetchall()
        wanted = set(keys) if keys is not None else None
        return {k: s for k, s in rows if wanted is None or k in wanted}

    def done_keys(self) -> set[str]:
        return {k for k, s in self.statuses().items() if s == "done"}

    def rows(self, suite: str | None = None, status: str | None = None) -> list[ResultRow]:
        query, args = f"SELECT {_QUOTED} FROM cells", []
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
        for values in self._db.execute(query, args).fetchall():
            d = dict(zip(_COLUMNS, values))
            for c in _JSON:
                d[c] = json.loads(d[c]) if d[c] else ({} if c != "history" else [])
            out.append(ResultRow(**d))
        return out

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM cells").fetchone()[0])
