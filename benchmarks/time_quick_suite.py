"""Wall time of `prunekit bench --all` on the default `quick` suite, against its 5-minute budget.

Runs the real command in a fresh temporary folder (new store, new dense cache) and prints the
seconds and the ratio to 300 s, then whether the suite discriminates: the clean leaderboard
(mean ± seed SD per method) and how many sanity-check verdicts were decided.

    python benchmarks/time_quick_suite.py [--suite NAME_OR_TOML] [--keep DIR] [extra bench options...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BUDGET = 300.0


def _discrimination(payload: dict[str, Any]) -> list[str]:
    lines = []
    per_sparsity = [e for e in payload.get("leaderboard", []) if e.get("sparsity") is not None]  # not the overall rank
    for entry in sorted(per_sparsity, key=lambda e: (e["sparsity"], -e["mean"])):
        sd = f" ± {entry['sd']:.1f}" if entry.get("sd") is not None else ""
        lines.append(f"  sparsity {entry['sparsity']:g}  {entry['method']:<24} {entry['mean']:5.1f}{sd}  (n={entry['n']})")
    verdicts = Counter(v["verdict"] for v in payload.get("verdicts", []))
    lines.append("verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--keep", default=None, help="copy the store and reports here")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as folder:
        cmd = [sys.executable, "-m", "prunekit.cli", "bench", "--all", "--suite", args.suite, "--json", *extra]
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if args.keep:
            shutil.copytree(folder, Path(args.keep), dirs_exist_ok=True, ignore=shutil.ignore_patterns(".prunekit-cache"))
    if out.returncode != 0:
        print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "bench failed", file=sys.stderr)
    payload = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
    summary = payload.get("summary", {})
    print(f"prunekit bench --all --suite {args.suite} {' '.join(extra)}".strip())
    print(f"cells {summary.get('total', '?')} (failed {summary.get('failed', '?')}), wall time {seconds:.1f} s")
    print(f"ratio to the {BUDGET:.0f} s budget = {seconds / BUDGET:.2f}  (target <= 1.00)")
    if payload:
        print("clean leaderboard (final accuracy %, mean ± SD over seeds):")
        print("\n".join(_discrimination(payload)))


if __name__ == "__main__":
    main()
