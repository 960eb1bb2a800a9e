"""`prunekit status` reads a bench's progress from the store alone, while another process
writes it, and after that process is gone."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_runner import run_cli as run

CELLS = 120
FIRST = 60  # cells the writer finishes (the first of them failed) before it waits

# A bench as the store sees it: it claims its cells (status running, owner host:pid:bench),
# then records results one by one, then stays alive with the rest claimed (a long cell).
WRITER = f"""
import os, socket, sys, time
import attrs
from prunekit.bench.records import ResultRow
from prunekit.bench.store import ResultStore

db, bench = sys.argv[1], sys.argv[2]
store = ResultStore(db)
store.start_bench(bench, "watched", ["prunekit", "bench", "--suite", "watched"], {{}})
rows = [
    ResultRow(key=f"cell{{i}}", suite="watched", model="digits_mlp", dataset="digits", method="snip",
              check="none", sparsity=0.9, seed=i, protocol="p", status="running", bench_id=bench)
    for i in range({CELLS})
]
owner = f"{{socket.gethostname()}}:{{os.getpid()}}:{{bench}}"
store.claim(rows, owner=owner, finished=("done",), alive=lambda o: True)
print("claimed", flush=True)
sys.stdin.readline()  # go
for i, row in enumerate(rows[:{FIRST}]):
    if i == 0:
        store.record(attrs.evolve(row, status="failed", error="RuntimeError: scorer blew up"))
    else:
        store.record(attrs.evolve(row, status="done", final_accuracy=0.5 + i / 1000))
    time.sleep(0.03)
print("waiting", flush=True)
sys.stdin.read()
"""


def _status(db: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    code, out, err = run(["status", "--db", str(db), "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def _digest(*paths: Path) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


def test_status_of_a_bench_another_process_is_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """While a writer process records results, every status read is one consistent state
    (done + failed + left = the cells claimed) and never goes backwards; once the writer waits,
    status says it is running with exact counts, an ETA and what is left; after the writer is
    killed, the bench is interrupted with the same cells left; reading never changes the store."""
    db = tmp_path / "r.db"
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), "bench-1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    ) as writer:  # fmt: skip
        try:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "claimed"
            assert _status(db, capsys)["shown"][0]["left"] == CELLS
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
            seen = []
            while True:
                shown = _status(db, capsys)["shown"]
                assert [b["bench_id"] for b in shown] == ["bench-1"]
                bench = shown[0]
                assert bench["done"] + bench["failed"] + bench["left"] == CELLS
                assert bench["state"] == "running"
                seen.append(bench["done"] + bench["failed"])
                if seen[-1] == FIRST:
                    break
                time.sleep(0.05)
            assert seen == sorted(seen) and len(set(seen)) > 1, seen  # reads interleaved with writes
            assert writer.stdout.readline().strip() == "waiting"

            bench = _status(db, capsys)["shown"][0]
            assert (bench["done"], bench["failed"], bench["left"]) == (FIRST - 1, 1, CELLS - FIRST)
            assert bench["owner"].endswith(f":{writer.pid}:bench-1") and str(writer.pid) in bench["state_reason"]
            assert bench["eta"] is not None and bench["eta"] > 0 and bench["seconds_per_cell"] > 0
            code, out, _ = run(["status", "--db", str(db)], capsys)
            assert code == 0
            assert "bench bench-1 (suite watched)" in out and ": running" in out
            assert f"{FIRST}/{CELLS} cells run: {FIRST - 1} done, 1 failed, 0 diverged; {CELLS - FIRST} left" in out
            assert "failed: digits_mlp snip / none at 0.9, seed 0: RuntimeError: scorer blew up" in out
            assert f"digits_mlp snip / none at 0.9, seed {FIRST}" in out  # the first cell left
            assert "command: prunekit bench --suite watched" in out
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()

    files = [db, Path(f"{db}-wal")]
    before = _digest(*files)
    bench = _status(db, capsys)["shown"][0]
    assert bench["state"] == "interrupted" and "has ended" in bench["state_reason"]
    assert (bench["done"], bench["failed"], bench["left"]) == (FIRST - 1, 1, CELLS - FIRST)
    assert bench["eta"] is None
    code, out, _ = run(["status", "--db", str(db)], capsys)
    assert "interrupted" in out and "run the same `prunekit bench` command to resume" in out
    assert _digest(*files) == before


def test_status_of_a_missing_store_and_an_unknown_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No store, or a bench id the store does not have, is one line saying what to do."""
    code, _, err = run(["status", "--db", str(tmp_path / "none.db")], capsys)
    assert code == 1 and err.count("\n") == 1 and "run `prunekit bench` first" in err
    assert not (tmp_path / "none.db").exists()
    from prunekit.bench.store import ResultStore

    with ResultStore(tmp_path / "r.db") as store:
        store.start_bench("b-1", "quick", ["prunekit", "bench"], {})
    code, _, err = run(["status", "--db", str(tmp_path / "r.db"), "--bench", "b-2"], capsys)
    assert code == 1 and err.count("\n") == 1 and "no bench 'b-2'" in err and "b-1" in err
    os.remove(tmp_path / "r.db")
