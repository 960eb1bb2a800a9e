"""``python -m prunekit``: the same command line as ``prunekit``."""

from prunekit.cli import main

if __name__ == "__main__":
    main()
