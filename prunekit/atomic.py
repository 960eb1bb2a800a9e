"""Atomic file writes: a reader (or a kill) sees the old file or the new one, never a torn one.

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
