"""Wall time of `prunekit bench --all` on the default `quick` suite, against its 5-minute budget.

Runs the real command in a fresh temporary folder (new store, new dense cache) and prints the
seconds and the ratio to 300 s.

    python benchmarks/time_quick_suite.py [--jobs N] [extra bench options...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

BUDGET = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick")
    args, extra = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as folder:
        cmd = [sys.executable, "-m", "prunekit.cli", "bench", "--all", "--suite", args.suite, "--json", *extra]
        start = time.perf_counter()
        out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    if out.returncode != 0:
        print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "bench failed", file=sys.stderr)
    summary = json.loads(out.stdout)["summary"] if out.stdout.strip().startswith("{") else {}
    print(f"prunekit bench --all --suite {args.suite} {' '.join(extra)}".strip())
    print(f"cells {summary.get('total', '?')} (failed {summary.get('failed', '?')}), wall time {seconds:.1f} s")
    print(f"ratio to the {BUDGET:.0f} s budget = {seconds / BUDGET:.2f}  (target <= 1.00)")


if __name__ == "__main__":
    main()
