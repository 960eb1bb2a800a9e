"""prunekit: pruning at initialization, sanity-checked.

The public facade; everything else is an implementation detail.
"""

from __future__ import annotations

__version__ = "0.1.0"

from prunekit.errors import PrunekitError
from prunekit.hookspecs import hookimpl
from prunekit.masks import Masks

__all__ = ["Masks", "PrunekitError", "__version__", "hookimpl"]
