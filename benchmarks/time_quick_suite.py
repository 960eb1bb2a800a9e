"""Wall time of `prunekit bench --all` on the default `quick` suite against its 5-minute budget,
and how decisive it is.

Runs the real command in a fresh temporary folder (new store, new dense cache) ``--runs`` times
and prints, for each run, the seconds and the ratio to 300 s; then, from the last run's store:
the share of applicable (method, check) verdicts that are decided (passes / fails / raises
accuracy), the seed-to-seed spread of clean runs (SD of final accuracy per method, points) and
of paired effects (SD of clean − with check per pair, points), and the clean leaderboard.

    python benchmarks/time_quick_suite.py [--runs 3] [--suite NAME_OR_TOML] [--keep DIR]
        [extra bench options, e.g. --until-decided --time-budget 600 --executor processes --jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

BUDGET = 300.0
DECIDED = ("passes", "fails", "raises accuracy")


def _spreads(db: Path) -> list[str]:
    """Seed spread of clean accuracies and of paired effects, from the store."""
    from prunekit.bench.stats import paired_differences
    from prunekit.bench.store import ResultStore

    with ResultStore(db, create=False) as store:
        rows = store.rows(status="done")
    clean: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.check == "none" and r.final_accuracy is not None:
            clean[r.method].append(100 * r.final_accuracy)
    clean_sd = [statistics.stdev(v) for v in clean.values() if len(v) >= 2]
    pair_sd = [statistics.stdev(d) for d in paired_differences(rows).values() if len(d) >= 2]
    lines = []
    if clean_sd:
        lines.append(
            f"clean runs: SD over seeds {min(clean_sd):.2f}..{max(clean_sd):.2f} points "
            f"(median {statistics.median(clean_sd):.2f}) across {len(clean_sd)} methods"
        )
    if pair_sd:
        lines.append(
            f"paired effects: SD over seeds {min(pair_sd):.2f}..{max(pair_sd):.2f} points "
            f"(median {statistics.median(pair_sd):.2f}) across {len(pair_sd)} pairs"
        )
    return lines


def _verdicts(payload: dict[str, Any]) -> list[str]:
    verdicts = list(payload.get("verdicts", []))
    counts = Counter(v["verdict"] for v in verdicts)
    decided = sum(counts[v] for v in DECIDED)
    seeds = [max(v.get("seeds_used") or [0]) for v in verdicts]
    lines = [
        f"verdicts decided: {decided} of {len(verdicts)} = {decided / max(len(verdicts), 1):.0%}  ("
        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        + ")"
    ]
    if seeds:
        lines.append(f"seeds per verdict: {min(seeds)}..{max(seeds)} (mean {statistics.mean(seeds):.1f})")
    return lines


def _leaderboard(payload: dict[str, Any]) -> list[str]:
    lines = []
    per_sparsity = [e for e in payload.get("leaderboard", []) if e.get("sparsity") is not None]
    # the payload's leaderboard holds accuracies as fractions; printed here in percent
    for entry in sorted(per_sparsity, key=lambda e: (e["sparsity"], -(e["mean"] or 0))):
        sd = f" ± {100 * entry['sd']:.1f}" if entry.get("sd") is not None else ""
        lines.append(
            f"  sparsity {entry['sparsity']:g}  {entry['method']:<24} {100 * entry['mean']:5.1f}{sd}  (n={entry['n']})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", default=None, help="copy the last run's store and reports here")
    args, extra = parser.parse_known_args()
    print(f"prunekit bench --all --suite {args.suite} {' '.join(extra)}".strip())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    payload: dict[str, Any] = {}
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as folder:
            cmd = [sys.executable, "-m", "prunekit.cli", "bench", "--all", "--suite", args.suite, "--json", *extra]
            start = time.perf_counter()
            out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
            seconds = time.perf_counter() - start
            if out.returncode != 0:
                print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "bench failed", file=sys.stderr)
            payload = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
            summary = payload.get("summary", {})
            print(
                f"run {run}: cells {summary.get('total', '?')} (failed {summary.get('failed', '?')}), "
                f"wall time {seconds:.1f} s, ratio to the {BUDGET:.0f} s budget = {seconds / BUDGET:.2f}"
            )
            if run == args.runs:
                db = Path(folder) / "prunekit-results.db"
                if db.is_file():
                    print("\n".join(_spreads(db)))
                if args.keep:
                    shutil.copytree(folder, Path(args.keep), dirs_exist_ok=True, ignore=shutil.ignore_patterns(".prunekit-cache"))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if payload:
        print("\n".join(_verdicts(payload)))
        print("clean leaderboard (final accuracy %, mean ± SD over seeds):")
        print("\n".join(_leaderboard(payload)))


if __name__ == "__main__":
    main()
