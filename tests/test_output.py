"""Output that fits where it goes: full names in pipes, no colour on request, progress lines in
logs, and a terminal ETA that survives slow cells."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prunekit.plugins import KINDS, get_plugins
from tests.cli_runner import run_cli as run

COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)[0-9;]*m")  # a foreground colour
SUITE = """
name = "out"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0]
methods = {methods}
checks = ["none"]
[protocol]
epochs = 1
lr_schedule = "constant"
milestones = []
"""
EXPLODING = """
import attrs
from typing import ClassVar
from prunekit.hookspecs import hookimpl
from prunekit.interfaces import Method, Scorer

@attrs.frozen
class Exploding(Scorer):
    name: ClassVar[str] = "exploding"
    description: ClassVar[str] = "raises"
    needs_data: ClassVar[bool] = False
    def score(self, model, ctx):
        raise RuntimeError("scorer blew up")

@hookimpl
def register_scorers(register):
    register(Exploding)

@hookimpl
def register_methods(register):
    register(Method(name="exploding", description="raises", family="initial", scorer="exploding"))
"""


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No switch of the caller's environment decides for the test what a terminal is."""
    for var in ("TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR", "COLUMNS", "PRUNEKIT_PROGRESS_SECONDS", "TERM"):
        monkeypatch.delenv(var, raising=False)


def test_piped_list_has_every_full_name(capsys: pytest.CaptureFixture[str]) -> None:
    """`prunekit list` into a pipe: one tab-separated line per registered object whose name
    field is the whole name (a `grep` finds lottery_ticket_rewind), nothing cut with "…"."""
    code, out, err = run(["list"], capsys)
    assert code == 0, err
    assert "…" not in out
    lines = out.splitlines()
    assert lines[0] == "kind\tname\tdescription\tplugin"
    names = {(line.split("\t")[0], line.split("\t")[1]) for line in lines[1:]}
    registered = {(kind, name) for kind in KINDS for name in get_plugins().registry(kind).names()}
    assert registered and names == registered
    code, out, _ = run(["list", "methods"], capsys)
    assert next(line for line in out.splitlines() if "lottery_ticket_rewind" in line).split("\t")[1] == "lottery_ticket_rewind"


def test_colour_follows_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, output is coloured unless NO_COLOR is set."""
    from prunekit.console import console

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    coloured = io.StringIO()
    console(file=coloured).print("[red]failed[/red]")
    assert COLOUR.search(coloured.getvalue())
    monkeypatch.setenv("NO_COLOR", "1")
    plain = io.StringIO()
    console(file=plain).print("[red]failed[/red]")
    assert "failed" in plain.getvalue() and not COLOUR.search(plain.getvalue())


def test_no_color_flag(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`prunekit --no-color` turns colour off for the whole process (NO_COLOR), on a terminal too."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("NO_COLOR", "")  # restored after the test, whatever the flag sets
    code, out, err = run(["--no-color", "list", "checks"], capsys)
    assert code == 0, err
    assert os.environ["NO_COLOR"] == "1"
    assert "random_labels" in out and not COLOUR.search(out + err)


def test_bench_redirected_to_a_file_writes_progress_lines(tmp_path: Path) -> None:
    """`prunekit bench > log 2>&1` (a real process, both streams to one file) writes plain
    progress lines: each with cells done/total, failures, elapsed and ETA, the last with every
    cell done and the failure counted; no terminal control codes."""
    suite = tmp_path / "out.toml"
    suite.write_text(SUITE.format(methods='["random_uniform", "exploding"]'))
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "exploding.py").write_text(textwrap.dedent(EXPLODING))
    log = tmp_path / "log"
    env = {
        **os.environ, "PRUNEKIT_PLUGINS_DIR": str(plugins), "PRUNEKIT_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    for var in ("TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR"):
        env.pop(var, None)
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "prunekit.cli", "bench", "--suite", str(suite), "--db", str(tmp_path / "r.db")],
            stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=300, check=False,
        )  # fmt: skip
    text = log.read_text()
    assert done.returncode == 1, text  # a cell failed
    progress = [line for line in text.splitlines() if line.startswith("[out] ")]
    pattern = re.compile(r"^\[out\] (\d+)/2 cells, (\d+) failed, elapsed \d+:\d\d:\d\d, eta (\d+:\d\d:\d\d|-:--:--)")
    assert progress and all(pattern.match(line) for line in progress), progress
    assert pattern.match(progress[0]).groups()[:2] == ("0", "0")  # type: ignore[union-attr]
    last = pattern.match(progress[-1])
    assert last is not None and last.groups() == ("2", "1", "0:00:00")
    assert any(pattern.match(line).group(1) == "1" for line in progress)  # type: ignore[union-attr]
    assert "\x1b[" not in text


def test_terminal_eta_for_slow_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On an 80-column terminal, a bench whose cells take 60 s (a simulated clock) shows the
    ETA after the first cell (2 cells left: 0:02:00), with the count and ETA whole, and every
    frame fits the 80 columns."""
    from prunekit import console
    from prunekit.bench import executors

    now = [1000.0]
    monkeypatch.setattr(console, "_CLOCK", lambda: now[0])
    real = executors.run_one

    def slow(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        now[0] += 60.0  # the cell took a minute
        return result

    monkeypatch.setattr(executors, "run_one", slow)
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    suite = tmp_path / "out.toml"
    suite.write_text(SUITE.format(methods='["random_uniform", "magnitude_at_init", "random_erk"]'))
    code, _, err = run(["bench", "--suite", str(suite), "--db", str(tmp_path / "r.db")], capsys)
    assert code == 0, err
    frames = [re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", f) for f in re.split(r"\r|\n", err)]
    bars = [f for f in frames if f.startswith("out ")]
    after_first = [f for f in bars if " 1/3 " in f]
    assert after_first and all("0:01:00 eta 0:02:00" in f for f in after_first), bars
    assert any(" 2/3 " in f and "0:02:00 eta 0:01:00" in f for f in bars), bars
    assert any(" 3/3 " in f and "0:03:00 eta 0:00:00" in f for f in bars), bars
    assert all(len(f.rstrip()) <= 80 for f in bars)


def test_progress_lines_are_throttled() -> None:
    """Off a terminal, lines come at the start, then at most once per interval, and at the
    end; each says done/total, failures, elapsed and ETA."""
    from prunekit import console

    now = [0.0]
    stream = io.StringIO()
    lines = console._Lines("t", 10, "cells", stream, every=30.0, clock=lambda: now[0])
    for _ in range(9):
        now[0] += 10.0
        lines.advance(1, "x")
    lines.fail()
    now[0] += 10.0
    lines.advance(1, "last")
    lines._show(final=True)
    written = stream.getvalue().splitlines()
    assert written == [
        "[t] 0/10 cells, 0 failed, elapsed 0:00:00, eta -:--:--",
        "[t] 3/10 cells, 0 failed, elapsed 0:00:30, eta 0:01:10 · x",
        "[t] 6/10 cells, 0 failed, elapsed 0:01:00, eta 0:00:40 · x",
        "[t] 9/10 cells, 0 failed, elapsed 0:01:30, eta 0:00:10 · x",
        "[t] 10/10 cells, 1 failed, elapsed 0:01:40, eta 0:00:00 · last",
    ]


def test_training_progress_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal, `train` reports epochs, and `prune` reports the dense pre-training of a
    lottery ticket and every retraining of the IMP rounds, as lines with done/total and ETA."""
    monkeypatch.setenv("PRUNEKIT_PROGRESS_SECONDS", "0")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["train", "--model", "digits_mlp", "--epochs", "2"], capsys)
    assert code == 0, err
    assert re.search(r"^\[train digits_mlp\] 1/2 epochs, 0 failed, elapsed \S+, eta \S+ · epoch 1: test accuracy", err, re.MULTILINE)
    assert re.search(r"^\[train digits_mlp\] 2/2 epochs, 0 failed, elapsed \S+, eta 0:00:00 · epoch 2", err, re.MULTILINE)
    base = ["prune", "--model", "digits_mlp", "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "m.safetensors")]
    code, _, err = run([*base, "--method", "imp", "--sparsity", "0.5"], capsys)
    assert code == 0, err
    assert re.search(r"^\[dense pre-training\] 1/1 epochs, 0 failed, elapsed \S+, eta 0:00:00", err, re.MULTILINE)
    # 20% of the remaining weights per round: densities 0.8, 0.64, 0.512, then 0.5
    rounds = re.findall(r"^\[IMP round (\d)/(\d), retraining\] 1/1 epochs", err, re.MULTILINE)
    assert rounds == [("1", "3"), ("2", "3"), ("3", "3")], err
