"""prunekit's built-in plugins.

Each module implements hooks of :mod:`prunekit.hookspecs`, exactly as a third-party plugin
does. They are listed here so they load even when entry-point autoloading is off.
"""

BUILTIN_PLUGINS: tuple[str, ...] = (
    "prunekit_plugins.models",
    "prunekit_plugins.datasets",
    "prunekit_plugins.basic_scorers",
    "prunekit_plugins.schedules",
    "prunekit_plugins.checks",
    "prunekit_plugins.sgd",
    "prunekit_plugins.methods",
    "prunekit_plugins.tickets",
    "prunekit_plugins.snip",
    "prunekit_plugins.grasp",
    "prunekit_plugins.synflow",
    "prunekit_plugins.suites_plugin",
    "prunekit_plugins.executors",
    "prunekit_plugins.ray_executor",
    "prunekit_plugins.batched_executor",
    "prunekit_plugins.instruments",
)
