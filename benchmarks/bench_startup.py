"""CPU time of starting the ``prunekit`` command, against the 1 s target.

Each command runs ``--repeats`` times as a fresh process (the installed console script, or
``python -m prunekit.cli`` where there is none); the CPU time of a run is its user + system
time, read from ``resource.getrusage(RUSAGE_CHILDREN)`` around it, so time spent waiting for a
loaded machine does not count, but everything the process computes (imports included) does.
The median over the repeats is printed with its ratio to the target:

* ``--version``, ``--help``, ``prune --help`` and ``completion bash``: target < 1 s (they load
  no plugin, no torch and no timm);
* ``list methods``, which loads every plugin (and so torch and timm), for reference: it is what
  the fast commands avoid.

Run::

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys

TARGET_SECONDS = 1.0
FAST = (["--version"], ["--help"], ["prune", "--help"], ["completion", "bash"])
REFERENCE = (["list", "methods"],)


def command() -> list[str]:
    """The prunekit command of this environment."""
    script = shutil.which("prunekit", path=os.path.dirname(sys.executable)) or shutil.which("prunekit")
    return [script] if script else [sys.executable, "-m", "prunekit.cli"]


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU seconds of one run of ``argv`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = command()
    print(f"command: {' '.join(base)}; median CPU seconds over {args.repeats} runs; target < {TARGET_SECONDS:g} s")
    for argv in (*FAST, *REFERENCE):
        cpu_seconds([*base, *argv])  # warm the file-system cache
        median = statistics.median(cpu_seconds([*base, *argv]) for _ in range(args.repeats))
        label = "prunekit " + " ".join(argv)
        if argv in FAST:
            verdict = "ok" if median < TARGET_SECONDS else "OVER TARGET"
            print(f"{label:28s} {median:6.3f} s CPU  ratio to target {median / TARGET_SECONDS:5.2f}  {verdict}")
        else:
            print(f"{label:28s} {median:6.3f} s CPU  (reference: loads every plugin, torch and timm)")


if __name__ == "__main__":
    main()
