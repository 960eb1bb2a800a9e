"""Atomic writes: a kill at any moment leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunekit.atomic import atomic_path, atomic_write

WRITER = r"""
import sys
from prunekit.atomic import atomic_write
path, size = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
i = 0
while True:
    i = (i + 1) % 250
    atomic_write(path, bytes([i]) * size)
"""


def test_kill_during_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    """A process rewriting a 4 MiB file in a loop is SIGKILLed at 20 moments; every time the
    file holds one whole version: full length, every byte the same value."""
    target = tmp_path / "file.bin"
    size = 4 << 20
    atomic_write(target, b"\x00" * size)
    seen = set()
    for attempt in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), str(size)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.01 + 0.013 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        data = target.read_bytes()
        assert len(data) == size, f"torn file after kill {attempt}: {len(data)} bytes"
        assert data.count(data[:1]) == size, f"mixed content after kill {attempt}"
        seen.add(data[0])
    assert len(seen) > 1, "the writer never replaced the file: the test did not exercise a kill mid-loop"


def test_error_inside_the_block_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    """An exception while writing leaves the previous content and no temporary file."""
    target = tmp_path / "masks.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half-way"), atomic_path(target) as tmp:
        tmp.write_bytes(b"new but incomplete")
        raise RuntimeError("half-way")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["masks.safetensors"]


def test_new_file_appears_only_complete(tmp_path: Path) -> None:
    """The target does not exist while the block runs, and holds the content afterwards."""
    target = tmp_path / "report.md"
    with atomic_path(target) as tmp:
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
