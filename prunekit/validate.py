"""Checks of what a command will write, made before any work (one line each)."""

from __future__ import annotations

import os
from pathlib import Path

from prunekit.errors import PrunekitError


def check_output_dir(folder: str | Path, option: str) -> Path:
    """``folder`` exists as a writable folder, or can be created: its nearest existing ancestor
    is a writable folder on a file system that takes new folders. Nothing is created here."""
    folder = Path(folder).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise PrunekitError(f"{option} {folder} is a file; pass a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PrunekitError(f"{option} {folder} is not writable; choose another folder")
        return folder
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK) or on_pseudo_fs(ancestor):
        raise PrunekitError(f"cannot create {option} {folder}: {ancestor} does not take new folders; choose another")
    return folder


def check_output_file(path: str | Path, option: str) -> Path:
    """``path`` can be written as a file: not a folder, and its folder passes
    :func:`check_output_dir`."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise PrunekitError(f"{option} {path} is a folder; pass a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise PrunekitError(f"{option} {path} is not writable; choose another path")
    check_output_dir(path.parent, f"the folder of {option}")
    return path


def on_pseudo_fs(folder: Path) -> bool:
    """Whether ``folder`` lies on a kernel pseudo file system (/proc, /sys), where even root
    cannot create files although access() says it may."""
    resolved = folder.resolve()
    return any(resolved == Path(p) or Path(p) in resolved.parents for p in ("/proc", "/sys"))
