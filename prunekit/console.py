"""Output that fits where it goes: rich on a terminal, plain untruncated lines elsewhere.

* :func:`console` — a rich ``Console`` on stdout or stderr. On a terminal (or in a notebook) it
  is rich as usual; elsewhere (a pipe, a file, a CI log) it has no colour and no width limit,
  so that a table never ends a name with "…".
* :func:`print_table` — rows under named columns: a rich table on a terminal, tab-separated
  lines (a header, then one line per row) elsewhere, so ``prunekit list methods | grep`` and
  ``cut -f2`` work.
* :func:`progress` — progress of long work on stderr: a live rich bar on a terminal, whose ETA
  survives steps slower than a minute and whose count and ETA are never squeezed into "…" at
  80 columns; elsewhere, a plain line at the start, then at most one every
  ``PRUNEKIT_PROGRESS_SECONDS`` seconds (default 30) and at the end. Every line gives
  done/total, failures, elapsed time and ETA.

Colour is off when ``NO_COLOR`` is set to any non-empty value (https://no-color.org), which
``prunekit --no-color`` does for the whole process. ``TTY_COMPATIBLE=1`` (rich's own switch)
makes a pipe count as a terminal, ``TTY_COMPATIBLE=0`` a terminal as a pipe.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

WIDE = 1_000_000  # the width of a console that is not a terminal: nothing is ever cut
PROGRESS_SECONDS = 30.0  # default interval between plain progress lines
# rich estimates speed over the last SPEED_WINDOW seconds (its default, 30 s, shows no ETA at
# all once a step takes longer than that, which is every GPU cell); hours keep several cells
# of even the slowest suite in the window, while a change of pace still shows within it
SPEED_WINDOW = 3 * 3600.0


def colour_off() -> bool:
    """Whether colour is off for this process (``NO_COLOR`` or ``--no-color``)."""
    return os.environ.get("NO_COLOR", "") != ""


def console(*, stderr: bool = False, file: IO[str] | None = None) -> Any:
    """A rich console for stdout (or stderr, or ``file``) that fits where it writes."""
    from rich.console import Console

    probe = Console(stderr=stderr, file=file)
    if probe.is_terminal or probe.is_jupyter:
        return Console(stderr=stderr, file=file, no_color=colour_off() or None)
    return Console(
        stderr=stderr, file=file, width=WIDE, no_color=True, color_system=None, highlight=False, soft_wrap=True
    )


def is_rich(out: Any) -> bool:
    """Whether a console from :func:`console` draws rich output (a terminal or a notebook)."""
    return bool(out.is_terminal or out.is_jupyter)


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    out: Any = None,
    right: Sequence[str] = (),
    whole: Sequence[str] = (),
) -> None:
    """``rows`` under ``columns``: a rich table on a terminal; elsewhere tab-separated lines
    (the title as a ``# `` line, a header, one line per row; tabs and newlines in values become
    spaces). On a terminal, ``right`` names the columns aligned right and ``whole`` those never
    wrapped nor cut (names: the other columns wrap to make room)."""
    out = out if out is not None else console()
    if not is_rich(out):
        lines = [f"# {title}"] if title else []
        lines.append("\t".join(columns))
        lines.extend("\t".join(_cell(v) for v in row) for row in rows)
        out.file.write("\n".join(lines) + "\n")
        out.file.flush()
        return
    from rich.table import Table

    table = Table(title=title)
    cells = [[_cell(v) for v in row] for row in rows]
    for i, col in enumerate(columns):
        widest = max([len(col), *(len(r[i]) for r in cells)])
        table.add_column(
            col,
            justify="right" if col in right else "left",
            no_wrap=col in whole,
            min_width=widest if col in whole else None,
        )
    for row in cells:
        table.add_row(*row)
    out.print(table)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\t", " ").replace("\n", " ")


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (as rich shows times), ``-:--:--`` when unknown."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "-:--:--"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def interval() -> float:
    """Seconds between plain progress lines (``PRUNEKIT_PROGRESS_SECONDS``, default 30)."""
    raw = os.environ.get("PRUNEKIT_PROGRESS_SECONDS", "")
    try:
        value = float(raw) if raw else PROGRESS_SECONDS
    except ValueError:
        return PROGRESS_SECONDS
    return value if value >= 0 else PROGRESS_SECONDS


class Reporter:
    """What long work calls as it goes (see :func:`progress`).

    ``advance(n, text)`` counts ``n`` more steps done and shows ``text`` (what is running or
    just finished); ``fail(n)`` counts failures among the steps done; ``note(text)`` shows text
    without counting. ``done``, ``failed`` and ``total`` are the counts so far.
    """

    def __init__(self, title: str, total: int, unit: str) -> None:
        self.title, self.total, self.unit = title, total, unit
        self.done = 0
        self.failed = 0
        self.text = ""

    def advance(self, n: int = 1, text: str | None = None) -> None:
        self.done += n
        if text is not None:
            self.text = text
        self._show(final=False)

    def fail(self, n: int = 1) -> None:
        self.failed += n

    def note(self, text: str) -> None:
        self.text = text
        self._show(final=False)

    def _show(self, *, final: bool) -> None:
        pass

    def close(self) -> None:
        pass


class _Quiet(Reporter):
    pass


class _Lines(Reporter):
    """Plain lines on a stream: one at the start, then at most one per ``every`` seconds (and
    whenever every step is done), each with done/total, failures, elapsed and ETA."""

    def __init__(
        self, title: str, total: int, unit: str, stream: IO[str], every: float, clock: Callable[[], float]
    ) -> None:
        super().__init__(title, total, unit)
        self.stream, self.every, self.clock = stream, every, clock
        self.started = clock()
        self.last: float | None = None
        self.written: tuple[int, int, str] | None = None
        self._write()

    def line(self) -> str:
        elapsed = self.clock() - self.started
        eta = None
        if self.done >= self.total:
            eta = 0.0
        elif self.done > 0:
            eta = elapsed / self.done * (self.total - self.done)
        text = (
            f"[{self.title}] {self.done}/{self.total} {self.unit}, {self.failed} failed, "
            f"elapsed {duration(elapsed)}, eta {duration(eta)}"
        )
        return text + (f" · {self.text}" if self.text else "")

    def _write(self) -> None:
        self.last = self.clock()
        self.written = (self.done, self.failed, self.text)
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def _show(self, *, final: bool) -> None:
        changed = self.written != (self.done, self.failed, self.text)
        due = self.last is None or self.clock() - self.last >= self.every
        finished = self.done >= self.total and (self.written is None or self.written[0] < self.total)
        if changed and (final or due or finished):
            self._write()


def _eta_column() -> Any:
    """rich's time-remaining column, which until rich has two samples in its speed window (so
    for the whole first step, and after a step longer than the window) falls back to the pace
    since the start: elapsed / done x left, as the plain lines do."""
    from rich.progress import TimeRemainingColumn
    from rich.text import Text

    class EtaColumn(TimeRemainingColumn):
        def render(self, task: Any) -> Any:
            if task.finished:
                return Text(duration(0.0), style="progress.remaining")
            remaining = task.time_remaining
            if remaining is None and task.completed and task.elapsed and task.total is not None:
                remaining = task.elapsed / task.completed * (task.total - task.completed)
            return Text(duration(remaining), style="progress.remaining")

    return EtaColumn


class _Bar(Reporter):
    """A live rich bar: title, bar, done/total, elapsed, ETA, then the text, cut to fit."""

    def __init__(self, title: str, total: int, unit: str, out: Any, clock: Callable[[], float]) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        _EtaColumn = _eta_column()
        super().__init__(title, total, unit)
        width = out.width
        name = title if len(title) <= 24 else title[:23] + "…"
        bar_width = 10 if width <= 100 else 24
        count = 2 * len(str(total)) + 1
        # every column but the text keeps its width; the text gets what is left (7 gaps)
        left = width - (len(name) + bar_width + count + 7 + len("eta") + 7 + 7) - 1
        self.bar = Progress(
            TextColumn(f"[bold]{name}[/bold]" if not out.no_color else name, table_column=Column(no_wrap=True)),
            BarColumn(bar_width=bar_width),
            MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=count)),
            TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
            TextColumn("eta", table_column=Column(no_wrap=True)),
            _EtaColumn(table_column=Column(no_wrap=True, min_width=7)),
            TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=max(left, 1))),
            console=out,
            transient=False,
            speed_estimate_period=SPEED_WINDOW,
            get_time=clock,
        )
        self.bar.start()
        self.task = self.bar.add_task("", total=total)

    def _show(self, *, final: bool) -> None:
        text = self.text + (f" · {self.failed} failed" if self.failed and "failed" not in self.text else "")
        self.bar.update(self.task, completed=self.done, description=text, refresh=True)

    def close(self) -> None:
        self.bar.refresh()
        self.bar.stop()


_CLOCK: Callable[[], float] = time.monotonic  # tests replace it to simulate slow steps


@contextmanager
def progress(
    title: str,
    total: int,
    *,
    unit: str = "steps",
    enabled: bool = True,
    stream: IO[str] | None = None,
) -> Iterator[Reporter]:
    """Report the progress of ``total`` steps of long work on stderr (or ``stream``).

    A terminal (or a notebook) gets a live rich bar; anything else periodic plain lines (see the
    module docs). Disabled, or with nothing to do, it shows nothing. The final state is always
    shown when the block ends, also when it ends by an exception.
    """
    if not enabled or total <= 0:
        yield _Quiet(title, total, unit)
        return
    out = console(stderr=stream is None, file=stream)
    reporter: Reporter
    if is_rich(out):
        reporter = _Bar(title, total, unit, out, _CLOCK)
    else:
        reporter = _Lines(title, total, unit, stream or sys.stderr, interval(), _CLOCK)
    try:
        yield reporter
    finally:
        reporter._show(final=True)
        reporter.close()
