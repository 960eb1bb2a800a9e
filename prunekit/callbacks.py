"""Training callbacks: what runs inside :meth:`Trainer.fit <prunekit.interfaces.Trainer.fit>`
at given steps and after every epoch (OpenLTH's training callbacks, as objects).

A trainer calls every callback in the order given, at two points:

* :meth:`TrainCallback.on_step` when the model holds the weights of step ``run.step``: once
  before the first step it takes (``run.step`` is then the start step, 0 for a run from the
  start, or the step a checkpoint resumes from) and after every optimizer step;
* :meth:`TrainCallback.on_epoch_end` after each epoch's evaluation, with the epoch's record
  (the dict appended to :attr:`TrainResult.history <prunekit.interfaces.TrainResult.history>`).

The built-ins: :class:`Snapshots` (the model's state at given steps, in
``TrainResult.snapshots``), :class:`Progress` (a function of each epoch's record) and
:class:`Checkpoint` (after each epoch, everything resuming needs, in one file a trainer resumes
from; see :meth:`Checkpoint.among`). Checkpoint files hold tensors and plain data only and are read
with ``torch.load(weights_only=True)``: a file whose unpickling would build any other object
(and so could run code) is refused with one line, before anything in it is used.

Callbacks are objects with two hooks rather than OpenLTH's plain functions run at chosen steps:
the epoch's record (which only the trainer computes) reaches progress reports and checkpoints
as an argument, a callback keeps its own settings (the steps, the path), and a trainer finds
the checkpoint it resumes from among them by type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from prunekit.atomic import atomic_path, load_plain
from prunekit.errors import PrunekitError

State = dict[str, torch.Tensor]
CHECKPOINT_FORMAT = "prunekit.train-checkpoint/1"


@attrs.define(kw_only=True, eq=False)
class TrainRun:
    """What a callback sees of a training run; the trainer keeps it current.

    * ``step``: optimizer steps taken, counted from 0 as in the full run (so a run started at
      step k begins at k); ``epoch``: epochs completed.
    * ``snapshots``: the states kept so far by step; the trainer returns this dict as
      :attr:`TrainResult.snapshots <prunekit.interfaces.TrainResult.snapshots>` and keeps it
      in its checkpoints.
    * ``state()``: a copy of the model's ``state_dict()`` now (on the training device).
    * ``resume_state()``: everything the trainer needs to resume from this point, as tensors
      and plain data; None for a trainer that cannot resume.
    """

    step: int
    epoch: int
    snapshots: dict[int, State] = attrs.field(factory=dict)
    state: Callable[[], State]
    resume_state: Callable[[], dict[str, Any]] | None = None


class TrainCallback:
    """Something run inside ``Trainer.fit``; override either hook (both do nothing here)."""

    def on_step(self, run: TrainRun) -> None:
        """The model holds the weights of step ``run.step`` (before training, then after every
        optimizer step)."""

    def on_epoch_end(self, run: TrainRun, record: dict[str, float]) -> None:
        """Epoch ``run.epoch`` ended; ``record`` is its entry of the history (``epoch``,
        ``step``, ``lr``, ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``)."""


def _steps(steps: Iterable[int]) -> frozenset[int]:
    return frozenset(int(s) for s in steps)


@attrs.frozen
class Snapshots(TrainCallback):
    """Keep the model's state at each of ``steps`` (0 = before training) in ``run.snapshots``."""

    steps: frozenset[int] = attrs.field(converter=_steps)

    def on_step(self, run: TrainRun) -> None:
        if run.step in self.steps and run.step not in run.snapshots:
            run.snapshots[run.step] = run.state()


@attrs.frozen
class Progress(TrainCallback):
    """Call ``report(record)`` after every epoch."""

    report: Callable[[dict[str, float]], None]

    def on_epoch_end(self, run: TrainRun, record: dict[str, float]) -> None:
        self.report(record)


@attrs.frozen
class Checkpoint(TrainCallback):
    """After every epoch, write what resuming needs to ``path`` (replacing the file atomically).

    A trainer resumes from ``path`` when the file exists (:meth:`among`, :meth:`load`)
    and refuses a checkpoint of another run; a trainer that cannot resume refuses this callback.
    """

    path: Path = attrs.field(converter=Path)

    def on_epoch_end(self, run: TrainRun, record: dict[str, float]) -> None:
        if run.resume_state is None:
            raise PrunekitError(
                f"the trainer gives no state to resume from, so no checkpoint can be written to {self.path}"
            )
        save_checkpoint(self.path, run.resume_state())

    @classmethod
    def among(cls, callbacks: Iterable[TrainCallback]) -> Checkpoint | None:
        """The one checkpoint among ``callbacks`` (None when there is none); two that name
        different files are refused (a run resumes from one)."""
        found = [c for c in callbacks if isinstance(c, cls)]
        if len({c.path for c in found}) > 1:
            raise PrunekitError(
                f"a run resumes from one checkpoint, but it was given {len(found)}: "
                f"{', '.join(str(c.path) for c in found)}"
            )
        return found[0] if found else None

    def load(self, device: torch.device | str = "cpu") -> dict[str, Any] | None:
        """The state a checkpoint at ``path`` holds (tensors on ``device``), None when there is
        no file; one-line :class:`PrunekitError` for a file that is not a checkpoint."""
        return load_checkpoint(self.path, torch.device(device)) if self.path.is_file() else None


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (plain data and tensors only) atomically, with the format marker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; one-line error for anything else."""
    state = load_plain(
        path, what="training checkpoint", nothing="no checkpoint", remedy="train from the start", map_location=device
    )
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PrunekitError(
            f"{path} is not a prunekit training checkpoint (no {CHECKPOINT_FORMAT!r} marker); delete it "
            "or point the run at another checkpoint path"
        )
    return state
