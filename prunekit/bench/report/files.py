"""Writing a report folder: one folder holds the report of one set of rows.

:func:`write_reports` renders everything in memory first, then writes each file atomically
(temporary file + rename), so a failure leaves the previous file or the new one, never half of
one. The folder's manifest (:data:`MANIFEST`) lists the files the last report wrote; the next
report removes those it does not write again (another format, plots switched off), so no file
of an earlier set of rows is left beside the new one. Files the manifest does not list are
never touched. The manifest is written first with the old and new names together, so a kill
midway leaves every file it wrote listed for the next run to clean up.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunekit.atomic import atomic_write
from prunekit.bench.records import ResultRow
from prunekit.errors import PrunekitError

from . import renderers
from .contents import render_figures
from .data import ReportData

FORMATS = ("md", "html", "csv", "json")
FILE_NAMES = {"md": "report.md", "html": "report.html", "csv": "results.csv", "json": "report.json"}
MANIFEST = ".prunekit-report.json"
MANIFEST_FORMAT = "prunekit-report-manifest"


def _plain_name(name: Any) -> bool:
    return (
        isinstance(name, str) and name not in ("", ".", "..", MANIFEST) and Path(name).name == name
    )


def read_manifest(out_dir: str | Path) -> list[str]:
    """The files the last report wrote into ``out_dir`` (none when it holds no manifest).
    A file of that name that is not a prunekit manifest is refused (one line)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return []
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError("another format")
        names = manifest["files"]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise PrunekitError(
            f"{path} is not a prunekit report manifest; remove it, or write the report to another folder"
        ) from None
    return [n for n in names if _plain_name(n)]


def _write_manifest(
    out_dir: Path, names: Sequence[str], rows: Sequence[ResultRow], complete: bool
) -> None:
    keys = hashlib.sha256(
        "\n".join(sorted(f"{r.key}:{r.status}" for r in rows)).encode()
    ).hexdigest()
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "complete": complete,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": len(rows),
        "rows_digest": keys,
        "files": sorted(names),
    }
    atomic_write(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def write_reports(
    data: ReportData,
    out_dir: Path,
    formats: Sequence[str] = FORMATS,
    plots: bool = True,
) -> list[Path]:
    """Write the report ``data`` (:func:`~prunekit.bench.report.build_report`) as the chosen
    files (``report.md``, ``report.html``, ``results.csv``, ``report.json``) and, with ``plots``,
    every figure as PNG, SVG and PDF into ``out_dir``; remove the files of the previous report
    there that this one does not write.

    Returns the paths written, figures first (the manifest not among them).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise PrunekitError(
            f"unknown report format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}"
        )
    rows = data.rows
    figures = render_figures(data) if plots else []
    files: dict[str, bytes] = {}
    for fig in figures:
        for fmt, content in fig.files.items():
            files[fig.file_name(fmt)] = content
    render = {
        "md": lambda: renderers.render_markdown(data, figures),
        "html": lambda: renderers.render_html(data, figures),
        "csv": lambda: renderers.render_csv(data),
        "json": lambda: renderers.render_json(data, figures),
    }
    for fmt in FORMATS:
        if fmt in formats:
            files[FILE_NAMES[fmt]] = render[fmt]().encode("utf-8")
    out_dir = Path(out_dir)
    previous = read_manifest(out_dir) if out_dir.is_dir() else []
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_manifest(out_dir, sorted(set(previous) | set(files)), rows, complete=False)
    written = []
    for name, content in files.items():
        path = out_dir / name
        atomic_write(path, content)
        written.append(path)
    for name in previous:
        old = out_dir / name
        if name not in files and old.is_file() and not old.is_symlink():
            old.unlink()
    _write_manifest(out_dir, list(files), rows, complete=True)
    return written
