"""``prunekit status``: a bench's progress, read from its store alone (no plugin loads)."""

from __future__ import annotations

import click

from prunekit.commands.common import emit_json


@click.command()
@click.option("--db", type=click.Path(dir_okay=False), default="prunekit-results.db", show_default=True, help="The results store a bench writes (`prunekit bench --db`).")
@click.option("--bench", "bench_id", default=None, help="Only this bench id (default: every bench with cells left, else the latest).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(db: str, bench_id: str | None, as_json: bool) -> None:
    """What a running or interrupted bench has done, is doing and has left, with its ETA.

    Read from the store alone, read-only (its bytes never change), so it can watch a bench that
    another process, or another machine sharing the file, is running.
    """
    from prunekit.bench.status import lines, read_status

    found = read_status(db, bench_id)
    if as_json:
        emit_json(found.as_dict())
        return
    click.echo("\n".join(lines(found)))
