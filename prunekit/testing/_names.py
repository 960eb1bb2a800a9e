"""The names of built-in plugin objects the conformance kit relies on, in one place.

They are the core's clean-check name (the sanity check that changes nothing), the dense
family (a method that keeps every weight), the default trainer (dense pre-training of methods
that pre-train) and the two data-free scorers the kit's sample methods use. When the core
defines constants for them, import those here instead.
"""

from __future__ import annotations

CLEAN_CHECK = "none"  # the sanity check that may (and must) change nothing
DENSE_FAMILY = "dense"  # the family of methods that prune nothing
DEFAULT_TRAINER = "sgd"  # the trainer the kit pre-trains with
SAMPLE_SCORERS: tuple[str, ...] = ("magnitude", "random")  # scorers of the kit's sample methods
