"""One table of kinds (prunekit.kinds) drives the hooks, the registries, the CLI's kind words,
completion and the conformance kit."""

from __future__ import annotations

import inspect
import json

import pytest

import prunekit as pk
import prunekit.testing
from prunekit import hookspecs
from prunekit.completion import complete_names
from prunekit.errors import PrunekitError
from prunekit.kinds import ALIASES, BY_NAME, KINDS
from prunekit.plugins import load_plugins
from tests.cli_runner import run_cli


def _hookspecs() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def test_every_register_hookspec_has_exactly_one_kind_and_back() -> None:
    """Each hookspec that receives ``register`` belongs to exactly one Kind, each Kind's hook is
    such a hookspec, and the one other hookspec is register_commands (it receives the CLI)."""
    specs = _hookspecs()
    registering = sorted(name for name, sig in specs.items() if list(sig.parameters) == ["register"])
    hooks = [kind.hook for kind in KINDS]
    assert sorted(hooks) == registering
    assert len(set(hooks)) == len(hooks)
    assert set(specs) - set(registering) == {"register_commands"}
    assert len({kind.name for kind in KINDS}) == len(KINDS) == len(BY_NAME)


def test_kinds_name_the_facades_interfaces() -> None:
    """What a plugin registers, per kind, is the class the facade exports under that name."""
    expected = {
        "scorer": pk.Scorer,
        "ratio_schedule": pk.RatioSchedule,
        "sanity_check": pk.SanityCheck,
        "trainer": pk.Trainer,
        "method": pk.Method,
        "dataset": pk.Dataset,
        "suite": pk.Suite,
        "executor": pk.Executor,
        "instrument": pk.Instrument,
        "model": None,
    }
    assert {kind.name: kind.interface_class() for kind in KINDS} == expected


def test_contracts_are_the_kits_public_checks() -> None:
    """Every kind the kit checks resolves to the public check of prunekit.testing, and the kit
    checks every kind whose objects are classes or Method recipes of the pipeline."""
    checked = {kind.name: kind.contract_check() for kind in KINDS if kind.contract is not None}
    assert checked == {
        "scorer": prunekit.testing.check_scorer,
        "ratio_schedule": prunekit.testing.check_schedule,
        "sanity_check": prunekit.testing.check_sanity_check,
        "trainer": prunekit.testing.check_trainer,
        "method": prunekit.testing.check_method,
        "dataset": prunekit.testing.check_dataset,
    }


def test_registries_are_the_kinds() -> None:
    """The plugin manager fills one registry per kind, and its messages name the kind in words."""
    loaded = load_plugins(autoload=False)
    assert set(loaded.registries) == set(BY_NAME)
    with pytest.raises(PrunekitError, match="unknown ratio schedule 'nope'"):
        loaded.registry("ratio_schedule").get("nope")


@pytest.mark.parametrize("word", ["schedule", "schedules", "ratio_schedule", "ratio_schedules"])
def test_list_accepts_every_word_of_a_kind(word: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`prunekit list WORD` lists the ratio schedules for the kind's name and label, singular
    and plural."""
    code, out, _ = run_cli(["list", word, "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    assert {row["kind"] for row in rows} == {"ratio_schedule"}
    assert sorted(row["name"] for row in rows) == load_plugins(autoload=False).registry("ratio_schedule").names()


def test_words_are_unambiguous_and_cover_every_kind() -> None:
    """Each CLI word means one kind, and every kind is reachable by its name and plural."""
    for kind in KINDS:
        assert ALIASES[kind.name] == ALIASES[f"{kind.name}s"] == kind.name
        assert ALIASES[kind.label] == ALIASES[f"{kind.label}s"] == kind.name
    assert ALIASES["checks"] == "sanity_check"


def test_completion_takes_kind_words_and_refuses_unknown_kinds() -> None:
    """complete_names accepts any word of a kind and fails at once for a kind that does not
    exist (a typo in an option's declaration)."""
    offered = [item.value for item in complete_names("checks")(None, None, "")]
    assert offered == load_plugins(autoload=False).registry("sanity_check").names()
    with pytest.raises(PrunekitError, match="unknown kind 'sanity_chek'"):
        complete_names("sanity_chek")
