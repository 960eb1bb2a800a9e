"""Errors that reach the user as one clear line.

Every error a user can cause (an unknown name, a number out of range, missing data, a mask
file that does not fit) is a :class:`PrunekitError`. The CLI prints its message on one line and
exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class PrunekitError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class UnknownNameError(PrunekitError, KeyError):
    """A name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateNameError(PrunekitError):
    """Two plugins registered the same name for the same kind of object."""


class PluginError(PrunekitError):
    """A plugin failed to load or its hook raised (strict mode turns these into errors)."""


class MaskMismatchError(PrunekitError):
    """A mask file does not fit the model it is applied to."""


class DataNotFoundError(PrunekitError):
    """A dataset's files are not where they must be."""


class LayerCollapseError(PrunekitError):
    """A prunable layer lost every weight, which disconnects the network."""


class DivergedError(PrunekitError):
    """Training diverged: the loss or the weights stopped being finite.

    ``step`` is the optimizer step whose loss (or whose update) was the first non-finite one,
    counted as in ``TrainResult.steps``; ``epoch`` is the 1-based epoch it fell in. A diverged
    run is a status, not a result: the bench stores it as ``diverged``.
    """

    def __init__(self, message: str, step: int, epoch: int) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch

    def __reduce__(self) -> tuple[type, tuple[str, int, int]]:  # picklable across processes
        return (type(self), (str(self), self.step, self.epoch))
