"""Atomic file writes: a reader (or a kill) sees the old file or the new one, never a torn one;
and safe reads of the torch files prunekit writes (:func:`load_plain`).

Every file prunekit writes for a user or a later run (masks, weights, reports, the dense cache,
training checkpoints) goes through :func:`atomic_path` or :func:`atomic_write`: the content is
written to a temporary file in the same folder, flushed to disk, and renamed over the target
(``os.replace`` is atomic on POSIX and Windows). On any error the temporary file is removed and
the old file, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write; renamed to ``path`` when the block ends without error.

    For libraries that write to a path themselves (``safetensors.torch.save_file``,
    ``torch.save``)::

        with atomic_path(out) as tmp:
            save_file(tensors, str(tmp))
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, content: bytes | str) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` atomically."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _fsync(path: Path) -> None:
    """Flush ``path``'s content to disk, so the rename never exposes an empty file after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_plain(path: Path, *, what: str, nothing: str, remedy: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: a file that would unpickle anything but tensors
    and plain data (and so could run code) or cannot be read is one
    :class:`~prunekit.errors.PrunekitError` line naming ``what`` it is (e.g. "training
    checkpoint"), what else it may be (``nothing``: "no checkpoint") and the ``remedy`` after
    deleting it."""
    import pickle
    import zipfile

    import torch

    from prunekit.errors import PrunekitError

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise PrunekitError(
            f"refusing to load the {what} {path}: it is not made of tensors and plain data only "
            f"(loading it could run code, or it is {nothing} at all); delete it to {remedy}"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PrunekitError(f"cannot read the {what} {path} ({reason}); delete it to {remedy}") from None
