"""The one list of built-in names the core refers to.

The core names no plugin except here (and the sentinels of :mod:`prunekit.sentinels`, which
the core defines rather than borrows); ``tests/test_layout.py`` keeps it so. Each name below is
a default that a user, a suite or a plugin can replace, or a built-in whose meaning the reports
spell out; the plugin that registers it is named beside it.
"""

from __future__ import annotations

# defaults of the recipe and the protocol
DEFAULT_TRAINER = "sgd"  # prunekit_plugins.sgd: the trainer of suites, `prunekit prune` and `train`
DEFAULT_OPTIMIZER = "sgd"  # prunekit_plugins.optimizers: TrainConfig.optimizer
# prunekit_plugins.schedules: Method.schedule (one threshold over all scores)
DEFAULT_SCHEDULE = "global"
# prunekit_plugins.methods: Suite.reference_method, what the leaderboards' Δ is against
REFERENCE_METHOD = "random_ticket"

# built-in optimizers whose settings the report's protocol table spells out
SGD_OPTIMIZER = "sgd"
ADAMW_OPTIMIZER = "adamw"

# the two checks whose effects, side by side, are Ma et al.'s winning-ticket criteria
# (the check-cell reading of the report's "Winning ticket?" table; prunekit_plugins.checks)
REINIT_CHECK = "reinit"  # the surviving weights re-drawn
RANDOM_MASK_CHECK = "layerwise_rearrange"  # a random mask with the ticket's layer ratios

# the example an error message suggests for composing a method on the command line
EXAMPLE_SCORER = "snip"  # prunekit_plugins.snip

# the scorers of the conformance kit's sample methods (data-free, so any check runs on them;
# prunekit_plugins.basic_scorers)
KIT_SAMPLE_SCORERS: tuple[str, ...] = ("magnitude", "random")
