"""The pytest plugin of the conformance kit (entry point ``pytest11``): the
``prunekit_conformance`` fixture.

pytest loads this module in every project where prunekit is installed, so it imports nothing
heavy: no torch, no timm, no prunekit plugins. The kit is imported inside the fixture, when a
test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from prunekit.testing.plugin import Conformance


@pytest.fixture
def prunekit_conformance() -> Iterator[Conformance]:
    """The conformance kit (``check_scorer``, ``check_schedule``, ``check_sanity_check``,
    ``check_method``, ``check_trainer``, ``check_dataset``, ``check_plugin``) and
    ``register(plugin, name)`` for this test (the plugin is removed afterwards)."""
    from prunekit.testing.plugin import Conformance

    kit = Conformance()
    try:
        yield kit
    finally:
        kit.close()
