"""Drive the real ``prunekit`` entry point in process, as a user's shell would."""

from __future__ import annotations

import pytest

from prunekit.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``prunekit argv``; (exit code, stdout, stderr)."""
    code = 0
    try:
        main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
