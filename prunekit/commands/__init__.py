"""The subcommands of ``prunekit``, one module each. :mod:`prunekit.cli` only assembles them:
it names each in one table and imports a command's module when that command is used, so
``prunekit --help`` and ``--version`` load no command, no plugin and no torch."""
