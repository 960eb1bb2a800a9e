"""``prunekit status``: what a running or interrupted bench has done, is doing and has left.

Everything is read from the results store alone, opened read-only (the store's bytes never
change), so it works while a bench writes the store, from another shell or another machine
sharing the file. A bench claims its cells in the store before it runs them (status
``running``, ``owner`` = ``host:pid:bench_id``, ``started``); each result replaces the claim
(``finished``). So for one bench:

* done, failed, diverged: its cells with a result;
* left: its cells still ``running`` — the one (or, with several workers, the few) being run,
  and those queued behind it; the store cannot tell these apart, so they are counted together;
* its state: ``finished`` (nothing left), ``running`` (its process is alive), ``interrupted``
  (its process on this host is gone: the same ``prunekit bench`` command resumes it), or
  ``elsewhere`` (it runs on another host, whose processes cannot be seen from here);
* the ETA: the cells left at the pace of the cells it finished since it started.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import attrs

from prunekit.bench.store import ResultStore
from prunekit.sentinels import DENSE_METHOD

RECENT = 3  # finished cells shown
FAILED_SHOWN = 5  # failed cells shown, with their errors


@attrs.frozen(kw_only=True)
class CellLine:
    """One cell as status shows it."""

    model: str
    method: str
    check: str
    sparsity: float
    seed: int
    status: str
    started: float | None
    finished: float | None
    final_accuracy: float | None = None
    error: str | None = None

    def text(self) -> str:
        at = "" if self.method == DENSE_METHOD else f" at {self.sparsity:g}"
        return f"{self.model} {self.method} / {self.check}{at}, seed {self.seed}"


@attrs.frozen(kw_only=True)
class BenchStatus:
    """One bench of a store: counts, state, times, and a few of its cells."""

    bench_id: str
    suite: str
    started: float | None
    argv: tuple[str, ...]
    owner: str | None
    state: str  # finished | running | interrupted | elsewhere
    state_reason: str
    done: int
    failed: int
    diverged: int
    left: int
    not_applicable: int
    last_result: float | None
    now: float
    recent: tuple[CellLine, ...]
    failures: tuple[CellLine, ...]
    waiting: tuple[CellLine, ...]  # the cells left, first few

    @property
    def ran(self) -> int:
        return self.done + self.failed + self.diverged

    @property
    def total(self) -> int:
        return self.ran + self.left

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        end = self.now if self.state in ("running", "elsewhere") else (self.last_result or self.now)
        return max(end - self.started, 0.0)

    @property
    def seconds_per_cell(self) -> float | None:
        """The pace so far: time since the bench started over the cells it finished."""
        if not self.ran or self.started is None or self.last_result is None:
            return None
        return max(self.last_result - self.started, 0.0) / self.ran

    @property
    def eta(self) -> float | None:
        """Seconds until every cell left is done at the pace so far (0 when none is left; None
        when nothing has finished yet, or nobody is running the cells left)."""
        if self.left == 0:
            return 0.0
        pace = self.seconds_per_cell
        if pace is None or self.state == "interrupted":
            return None
        since = self.now - (self.last_result or self.now)
        return max(pace * self.left - since, 0.0)

    def as_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d.update(total=self.total, elapsed=self.elapsed, seconds_per_cell=self.seconds_per_cell, eta=self.eta)
        return d


@attrs.frozen(kw_only=True)
class StoreStatus:
    """The store as a whole and the benches shown."""

    path: str
    cells: int
    by_status: dict[str, int]
    benches: int
    shown: tuple[BenchStatus, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "cells": self.cells,
            "by_status": self.by_status,
            "benches": self.benches,
            "shown": [b.as_dict() for b in self.shown],
        }


def process_alive(owner: str) -> bool | None:
    """Whether the process that claimed cells (``host:pid:bench``) still runs: None when it is
    on another host (not visible from here). The runner decides whether to wait for a claimed
    cell the same way (:func:`prunekit.bench.runner.owner_alive`)."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return None
    try:
        pid = int(rest.partition(":")[0])
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _columns(store: ResultStore, table: str) -> set[str]:
    return {r[1] for r in store.db.execute(f"PRAGMA table_info({table})")}


def read_status(path: str | Path, bench_id: str | None = None, *, now: float | None = None) -> StoreStatus:
    """The status of the store at ``path`` (read-only): every bench that still has cells
    claimed, or the latest bench when none has; or only ``bench_id``."""
    from prunekit.errors import PrunekitError

    now = time.time() if now is None else now
    with ResultStore(path, create=False) as store:
        db = store.db
        db.execute("BEGIN")  # one consistent snapshot of a store another process is writing
        try:
            by_status = dict(db.execute("SELECT status, COUNT(*) FROM cells GROUP BY status").fetchall())
            cells = sum(by_status.values())
            columns = _columns(store, "cells")
            bench_columns = _columns(store, "benches")
            benches = [
                (r[0], r[1], r[2], r[3])
                for r in db.execute(
                    "SELECT bench_id, suite, started, argv FROM benches ORDER BY started"
                ).fetchall()
            ] if bench_columns else []
            if bench_id is not None:
                chosen = [b for b in benches if b[0] == bench_id]
                if not chosen:
                    known = ", ".join(b[0] for b in benches[-5:]) or "none"
                    raise PrunekitError(f"no bench {bench_id!r} in {path}; its latest benches: {known}")
            else:
                busy = set()
                if "owner" in columns:
                    busy = {
                        str(o).rpartition(":")[2]
                        for (o,) in db.execute("SELECT DISTINCT owner FROM cells WHERE status = 'running' AND owner IS NOT NULL")
                    }
                chosen = [b for b in benches if b[0] in busy] or benches[-1:]
            shown = tuple(_bench(db, columns, b, now) for b in chosen)
        finally:
            db.execute("COMMIT")
    return StoreStatus(path=str(path), cells=cells, by_status=by_status, benches=len(benches), shown=shown)


_FIELDS = ("model", "method", '"check"', "sparsity", "seed", "status", "started", "finished", "final_accuracy", "error")


def _bench(db: Any, columns: set[str], bench: tuple[Any, ...], now: float) -> BenchStatus:
    bench_id, suite, started, argv = bench
    fields = [f if f.strip('"') in columns else "NULL" for f in _FIELDS]
    has_owner = "owner" in columns
    where = "bench_id = ?" + (" OR owner LIKE ?" if has_owner else "")
    args: list[Any] = [bench_id] + ([f"%:{bench_id}"] if has_owner else [])
    select = ", ".join(fields) + (", owner" if has_owner else ", NULL")
    rows = db.execute(f"SELECT {select} FROM cells WHERE {where} ORDER BY rowid", args).fetchall()
    lines, owners = [], set()
    for r in rows:
        lines.append(
            CellLine(
                model=r[0], method=r[1], check=r[2], sparsity=r[3], seed=r[4], status=r[5],
                started=r[6], finished=r[7], final_accuracy=r[8], error=r[9],
            )
        )  # fmt: skip
        if r[5] == "running" and r[10]:
            owners.add(str(r[10]))
    count = {s: sum(1 for c in lines if c.status == s) for s in ("done", "failed", "diverged", "running", "not_applicable")}
    results = [c for c in lines if c.status in ("done", "failed", "diverged") and c.finished is not None]
    results.sort(key=lambda c: c.finished or 0.0)
    last = results[-1].finished if results else None
    owner = min(owners) if owners else None
    state, reason = _state(count["running"], owner)
    try:
        command = tuple(json.loads(argv)) if argv else ()
    except (json.JSONDecodeError, TypeError):
        command = ()
    return BenchStatus(
        bench_id=bench_id,
        suite=suite or "",
        started=started,
        argv=command,
        owner=owner,
        state=state,
        state_reason=reason,
        done=count["done"],
        failed=count["failed"],
        diverged=count["diverged"],
        left=count["running"],
        not_applicable=count["not_applicable"],
        last_result=last,
        now=now,
        recent=tuple(reversed(results[-RECENT:])),
        failures=tuple(c for c in lines if c.status == "failed")[:FAILED_SHOWN],
        waiting=tuple(c for c in lines if c.status == "running")[:RECENT],
    )


def _state(left: int, owner: str | None) -> tuple[str, str]:
    if left == 0:
        return "finished", "no cell left"
    if owner is None:
        return "interrupted", "its cells have no owner recorded; run the same `prunekit bench` command to resume"
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    alive = process_alive(owner)
    if alive is None:
        return "elsewhere", f"it runs on host {host} (process {pid}), which cannot be seen from here"
    if alive:
        return "running", f"process {pid} on this host is running it"
    return (
        "interrupted",
        f"process {pid} on this host has ended; run the same `prunekit bench` command to resume it",
    )


def _clock(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "-"


def lines(status: StoreStatus) -> list[str]:
    """The status as plain text lines."""
    from prunekit.console import duration

    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(status.by_status.items()))
    benches = f"{status.benches} bench{'' if status.benches == 1 else 'es'}"
    out = [f"store {status.path}: {status.cells} cells ({counts or 'none'}), {benches}"]
    for b in status.shown:
        out.append("")
        out.append(f"bench {b.bench_id} (suite {b.suite}), started {_clock(b.started)}: {b.state} — {b.state_reason}")
        out.append(
            f"  {b.ran}/{b.total} cells run: {b.done} done, {b.failed} failed, {b.diverged} diverged; "
            f"{b.left} left" + (f"; {b.not_applicable} not applicable" if b.not_applicable else "")
        )
        pace = b.seconds_per_cell
        since = f", last result {duration(b.now - b.last_result)} ago" if b.last_result is not None else ", no result yet"
        out.append(
            f"  elapsed {duration(b.elapsed)}{since}"
            + (f"; {pace:.1f} s per cell" if pace is not None else "")
            + (f", eta {duration(b.eta)}" if b.state != "finished" else "")
        )
        if b.left and b.state != "finished":
            doing = "running" if b.state in ("running", "elsewhere") else "to run again"
            first = "; ".join(c.text() for c in b.waiting)
            more = f" and {b.left - len(b.waiting)} more" if b.left > len(b.waiting) else ""
            out.append(f"  {doing} or queued: {first}{more}")
        for c in b.recent:
            acc = f", final accuracy {c.final_accuracy:.4f}" if c.final_accuracy is not None else ""
            out.append(f"  finished {_clock(c.finished)}: {c.text()}: {c.status}{acc}")
        for c in b.failures:
            out.append(f"  failed: {c.text()}: {(c.error or '').splitlines()[0] if c.error else 'no error text'}")
        if b.argv:
            out.append(f"  command: {' '.join(b.argv)}")
    return out

