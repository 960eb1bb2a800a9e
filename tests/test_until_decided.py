"""`prunekit bench --until-decided`: seeds go only to open pairs, the design is fixed before the
first look, recorded, and used again by `prunekit report`."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from prunekit.bench.stats import SequentialDesign
from prunekit.bench.store import ResultStore
from tests.cli_runner import run_cli

SUITE = """
name = "until"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0, 1, 2]
methods = ["snip", "random_uniform"]
checks = ["none", "reinit", "random_labels"]
equivalence_margin = 2.0

[protocol]
epochs = 1
batch_size = 128
lr = 0.05
lr_schedule = "cosine"
"""


def test_until_decided_adds_seeds_to_open_pairs_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After the 3 seeds of the grid, a pair decided at its first look gets no more seeds; an
    open one gets seeds 3, 4, ... until decided or --max-seeds; its clean run gets the same
    seeds (paired); the design is stored with the bench and `prunekit report` reads by it."""
    suite, db = tmp_path / "until.toml", tmp_path / "r.db"
    suite.write_text(SUITE)
    code, out, err = run_cli(
        ["bench", "--suite", str(suite), "--db", str(db), "--until-decided", "--max-seeds", "5", "--json"], capsys
    )
    assert code == 0, err
    verdicts = {(v["method"], v["check"]): v for v in json.loads(out)["verdicts"]}
    with ResultStore(db, create=False) as store:
        rows = store.rows(status="done")
        recorded = store.bench_settings("until")["design"]
    design = SequentialDesign(**recorded)
    assert (design.min_seeds, design.max_seeds, design.margin) == (3, 5, 2.0)
    seeds: dict[tuple[str, str], set[int]] = defaultdict(set)
    for row in rows:
        seeds[(row.method, row.check)].add(row.seed)
    for (method, check), verdict in verdicts.items():
        used = seeds[(method, check)]
        assert used == set(range(len(used))), f"seeds of {method}/{check} are not 0..n-1: {used}"
        assert seeds[(method, "none")] >= used, "every check seed has its clean run"
        decision = design.decide(_diffs(rows, method, check))
        if decision.status == "decided":
            assert len(used) == decision.n and verdict["verdict"] == decision.verdict
        else:
            assert len(used) == 5 and verdict["verdict"] not in ("passes", "fails", "raises accuracy")
    assert any(len(s) > 3 for s in seeds.values()) or all(
        design.decide(_diffs(rows, m, c)).n == 3 for m, c in verdicts
    )
    code, out, err = run_cli(["report", "--db", str(db), "--json", "--no-plots"], capsys)
    assert code == 0, err
    assert json.loads(out)["settings"]["sequential"] == recorded


def _diffs(rows: list, method: str, check: str) -> list[float]:
    clean = {r.seed: r.final_accuracy for r in rows if (r.method, r.check) == (method, "none")}
    checked = {r.seed: r.final_accuracy for r in rows if (r.method, r.check) == (method, check)}
    return [100 * (clean[s] - checked[s]) for s in sorted(set(clean) & set(checked))]


def test_until_decided_needs_three_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fewer than 3 starting seeds is one line, before anything runs."""
    suite, db = tmp_path / "until.toml", tmp_path / "r.db"
    suite.write_text(SUITE.replace("seeds = [0, 1, 2]", "seeds = [0, 1]"))
    code, _, err = run_cli(["bench", "--suite", str(suite), "--db", str(db), "--until-decided"], capsys)
    assert code != 0 and "at least 3 seeds" in err and not db.exists()
