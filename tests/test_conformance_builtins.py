"""Every built-in scorer, schedule, sanity check, method, trainer and dataset passes the
conformance kit.

Parametrized over the registries themselves (as timm's tests run over its model registry),
so a new built-in is checked without touching this file.
"""

from __future__ import annotations

import pytest

from prunekit import testing
from prunekit.plugins import load_plugins

_BUILTINS = load_plugins(autoload=False)


def _names(kind: str) -> list[str]:
    return _BUILTINS.registry(kind).names()


@pytest.mark.parametrize("name", _names("scorer"))
def test_builtin_scorer_conforms(name: str) -> None:
    """The scorer returns finite, deterministic scores of the right shapes on the kit's models
    and leaves the model, the masks and the global RNG untouched."""
    testing.check_scorer(name)


@pytest.mark.parametrize("name", _names("ratio_schedule"))
def test_builtin_schedule_conforms(name: str) -> None:
    """The schedule's counts lie in 0..numel and hit every density within one weight per layer."""
    testing.check_schedule(name)


@pytest.mark.parametrize("name", _names("sanity_check"))
def test_builtin_check_conforms(name: str) -> None:
    """The check perturbs every stage it declares (none: nothing), deterministically, without
    changing its inputs."""
    testing.check_sanity_check(name)


@pytest.mark.parametrize("name", _names("method"))
def test_builtin_method_conforms(name: str) -> None:
    """The recipe prunes the kit's conv net to the target density, deterministically."""
    testing.check_method(name)


@pytest.mark.parametrize("name", _names("trainer"))
def test_builtin_trainer_conforms(name: str) -> None:
    """The trainer keeps pruned weights and every optimizer state tensor exactly zero after
    every step, trains a kept weight that starts at 0, reports final/best accuracy and step
    count, and honours snapshot steps."""
    testing.check_trainer(name)


@pytest.mark.parametrize("name", _names("dataset"))
def test_builtin_dataset_conforms(name: str) -> None:
    """A dataset that needs no files loads matching train/test splits with labels in range,
    finite normalisation and the same split every time; one that reads files refuses a missing
    --data-root (and an empty folder) with one line."""
    testing.check_dataset(name)


def test_every_kind_is_covered() -> None:
    """The parametrization is not silently empty: the built-ins register objects of each kind."""
    kinds = ("scorer", "ratio_schedule", "sanity_check", "method", "trainer", "dataset")
    assert all(_names(kind) for kind in kinds)
