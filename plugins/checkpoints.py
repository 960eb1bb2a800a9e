"""Training checkpoints that hold only tensors and plain data, loaded without running code.

A checkpoint is a ``torch.save`` file of a dict of tensors, numbers, strings, lists and dicts
(model and optimizer state, the data-order generator's state, history, snapshots), read back
with ``torch.load(weights_only=True)``: a file whose unpickling would build any other object
(and so could run code) is refused with one line, before anything in it is used.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from prunekit import PrunekitError, atomic_path

FORMAT = "prunekit.train-checkpoint/1"


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (plain data and tensors only) atomically, with the format marker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; one-line error for anything else."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise PrunekitError(
            f"refusing to load the training checkpoint {path}: it is not made of tensors and "
            "plain data only (loading it could run code, or it is no checkpoint at all); delete "
            "it to train from the start"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PrunekitError(
            f"cannot read the training checkpoint {path} ({reason}); delete it to train from "
            "the start"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PrunekitError(
            f"{path} is not a prunekit training checkpoint (no {FORMAT!r} marker); delete it "
            "or point the run at another checkpoint path"
        )
    return state
