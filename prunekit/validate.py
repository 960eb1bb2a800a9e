"""Checks made before any work (one line each): what a command will write, the device it will
run on, and whether its method options make one recipe."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunekit.defaults import DEFAULT_SCHEDULE, EXAMPLE_SCORER
from prunekit.errors import PrunekitError

if TYPE_CHECKING:
    import torch


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


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available) as a device; anything
    else, or a GPU that is not there, is one line."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PrunekitError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise PrunekitError(f"device {name!r} cannot train models here; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PrunekitError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PrunekitError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible; use cuda:0.."
            )
    return device


def check_composition(method: str | None, **flags: Any) -> None:
    """A named method is a recipe of its own: combined with a flag that composes one (a scorer,
    a schedule) it would write the composed method's masks under the named method's label."""
    given = [f"--{name} {value}" for name, value in flags.items() if value is not None]
    if method is not None and given:
        raise PrunekitError(
            f"--method {method} is a named recipe and {' '.join(given)} composes another; give "
            f"either --method, or --scorer with --schedule (e.g. --scorer {flags.get('scorer') or EXAMPLE_SCORER} "
            f"--schedule {flags.get('schedule') or DEFAULT_SCHEDULE})"
        )
