"""Suite files are structured by cattrs: the shipped suites read as their TOML says (the same
values and fingerprints as before), a wrong type anywhere is one line naming the file and the
dotted key, and an unknown key is refused with the nearest allowed one."""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from prunekit.bench.suite import ALL, PublishedNumber, load_suite
from prunekit.errors import PrunekitError
from prunekit.interfaces import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SHIPPED = sorted((p for p in files("prunekit_plugins.suites").iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)

# the fingerprints of the shipped suites, as their results carry them: a change here orphans
# every stored result of the suite
FINGERPRINTS = {
    "evci2022_cifar10": "4d966f630d93",
    "evci2022_digits": "d56d2c389ca4",
    "frankle2020_cifar10": "4d966f630d93",
    "frankle2020_digits": "d56d2c389ca4",
    "frankle2021_cifar10": "9b48a3d91eb4",
    "grasp2020_cifar10": "00e854e58101",
    "grasp2020_cifar10_resnet32": "a57f8e09eea1",
    "ma2021_cifar10": "4d966f630d93",
    "ma2021_digits": "d56d2c389ca4",
    "quick": "7430e415ed78",  # since digits_cnn pool_after = 1 (the former quick: d56d2c389ca4)
    "su2020_cifar10": "7b17edb71e15",
    "su2020_cifar100": "2e32bed58c8f",
    "tiny_imagenet": "f63613627787",
}

SUITE = """
name = "files"
description = "every key of a suite file"
dataset = "digits"
data_root = "data"
models = ["digits_mlp", "digits_cnn"]
sparsities = [0.5, 0.8]
seeds = [0, 1]
methods = ["snip", "random_ticket"]
checks = "all"
trainer = "sgd"
instruments = ["gradient_flow"]
device = "cpu"
published = "a table"
reference_method = "snip"
equivalence_margin = 2
estimated_cell_seconds = 1.5
[protocol]
epochs = 3
lr = 1
lr_schedule = "cosine"
milestones = []
[scoring]
samples_per_class = 2
[model]
drop_rate = 0.1
[model.digits_cnn]
width = 8
[method_options.snip]
scoring_augment = false
[check_options.random_labels]
seed = 7
[dataset_options]
normalization = "imagenet"
[instrument_options.gradient_flow]
points = 3
[[published_numbers]]
source = "a paper"
model = "digits_mlp"
method = "snip"
sparsities = [0.8]
accuracies = [90]
"""


def _json(value: Any) -> str:
    """``value`` as JSON, which tells 1 from 1.0 and a list from a string."""
    return json.dumps(value, sort_keys=True, default=list)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "files.toml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(PrunekitError) as err:
        load_suite(_write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------ shipped suites
@pytest.mark.parametrize("entry", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_suite_holds_what_its_file_says(entry: Any) -> None:
    """Every key of the file reaches the suite unchanged, as the file typed it (an integer stays
    an integer, which a fingerprint tells from a float); every key it leaves out has its
    default; the protocol is TrainConfig of the [protocol] table; the published numbers are
    one per sparsity on the suite's dataset."""
    raw = tomllib.loads(entry.read_text())
    suite = load_suite(str(entry))
    tables = {"model": "model_options", "published_numbers": None, "protocol": None}
    for key, value in raw.items():
        field = tables.get(key, key)
        if field is not None:
            assert _json(getattr(suite, field)) == _json(value), key
    assert suite.protocol == TrainConfig(**raw.get("protocol", {}))
    for key, value in raw.get("protocol", {}).items():
        assert _json(getattr(suite.protocol, key)) == _json(value), f"protocol.{key}"
    expected = [
        PublishedNumber(dataset=raw["dataset"], model=t["model"], method=t["method"], sparsity=s, accuracy=a,
                        source=t["source"], confirmed=t.get("confirmed", False), metric=t.get("metric", "best_accuracy"))
        for t in raw.get("published_numbers", []) for s, a in zip(t["sparsities"], t["accuracies"])
    ]  # fmt: skip
    assert list(suite.published_numbers) == expected
    assert (suite.methods == ALL) == (raw.get("methods", ALL) == ALL)
    assert (suite.trainer, suite.device, suite.reference_method) == (
        raw.get("trainer", "sgd"), raw.get("device", "cpu"), raw.get("reference_method", "random_ticket")
    )  # fmt: skip
    assert suite.source == str(entry)


def test_the_shipped_suites_keep_their_fingerprints() -> None:
    """The protocol fingerprint of every shipped suite is the one its stored results carry."""
    assert {load_suite(str(p)).name: load_suite(str(p)).fingerprint() for p in SHIPPED} == FINGERPRINTS


# --------------------------------------------------------------------------- a valid file
def test_a_file_with_every_key_reads_back_as_written(tmp_path: Path) -> None:
    """Each key lands in its field with the value and type written ([model] in model_options,
    integers in number fields stay integers), the rest keep their defaults."""
    suite = load_suite(_write(tmp_path, SUITE))
    assert (suite.name, suite.description, suite.dataset, suite.data_root) == (
        "files", "every key of a suite file", "digits", "data"
    )  # fmt: skip
    assert (suite.models, suite.sparsities, suite.seeds) == (("digits_mlp", "digits_cnn"), (0.5, 0.8), (0, 1))
    assert (suite.methods, suite.checks, suite.trainer, suite.device) == (("snip", "random_ticket"), "all", "sgd", "cpu")
    assert (suite.published, suite.reference_method, suite.instruments) == ("a table", "snip", ("gradient_flow",))
    assert _json([suite.equivalence_margin, suite.estimated_cell_seconds]) == "[2, 1.5]"
    assert suite.protocol == TrainConfig(epochs=3, lr=1, lr_schedule="cosine", milestones=())
    assert _json(suite.protocol.lr) == "1"
    assert dict(suite.scoring) == {"samples_per_class": 2}
    assert dict(suite.model_options) == {"drop_rate": 0.1, "digits_cnn": {"width": 8}}
    assert suite.options_for_model("digits_cnn") == {"drop_rate": 0.1, "width": 8}
    assert dict(suite.method_options) == {"snip": {"scoring_augment": False}}
    assert dict(suite.check_options) == {"random_labels": {"seed": 7}}
    assert dict(suite.dataset_options) == {"normalization": "imagenet"}
    assert dict(suite.instrument_options) == {"gradient_flow": {"points": 3}}
    assert suite.published_numbers == (
        PublishedNumber(dataset="digits", model="digits_mlp", method="snip", sparsity=0.8, accuracy=90.0,
                        source="a paper", confirmed=False),
    )  # fmt: skip


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lr = 1\n", 'lr = "abc"\n', "'protocol.lr' must be a number, got 'abc'"),
        ("epochs = 3", "epochs = true", "'protocol.epochs' must be an integer, got True"),
        ('lr_schedule = "cosine"', "lr_schedule = 3", "'protocol.lr_schedule' must be a string, got 3"),
        ("samples_per_class = 2", "samples_per_class = 2.5", "'scoring.samples_per_class' must be an integer, got 2.5"),
        ("samples_per_class = 2", "samples_per_class = 0", "'scoring.samples_per_class' must be an integer > 0, got 0"),
        ("scoring_augment = false", "scoring_augment = false\n[method_options]\nrandom_ticket = 3",
         "'method_options.random_ticket' must be a table, got 3"),
        ("accuracies = [90]", 'accuracies = ["90"]', "'published_numbers[0].accuracies[0]' must be a number, got '90'"),
        ('name = "files"', "name = 3", "'name' must be a string, got 3"),
        ('models = ["digits_mlp", "digits_cnn"]', 'models = "digits_mlp"', "'models' must be a list, got 'digits_mlp'"),
        ("seeds = [0, 1]", "seeds = [0, 1, 0]", "'seeds' lists 0 more than once"),
        ('device = "cpu"', 'device = "gpu"', "'device' must be \"cpu\" or \"cuda\", got 'gpu'"),
        ("[protocol]", "protocol = 3\n[check_options.x]", "'protocol' must be a table, got 3"),
    ],
)  # fmt: skip
def test_a_wrong_value_is_one_line_naming_the_file_and_the_dotted_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    """Types are checked as the file wrote them (no "1" read as 1, no string read as a list of
    letters), at any depth; the line names the file and the key's dotted path."""
    assert old in SUITE
    path = tmp_path / "files.toml"
    assert _error(tmp_path, SUITE.replace(old, new, 1)) == f"invalid suite {path}: {message}"


@pytest.mark.parametrize(
    ("old", "new", "key", "suggestion"),
    [
        ('dataset = "digits"', 'dataset = "digits"\nsparsity = [0.5]', "sparsity", "sparsities"),
        ("epochs = 3", "epochs = 3\nepoch = 4", "protocol.epoch", "protocol.epochs"),
        ("samples_per_class = 2", "sample_per_class = 2", "scoring.sample_per_class", "scoring.samples_per_class"),
        ('source = "a paper"', 'source = "a paper"\nconfirm = true', "published_numbers[0].confirm", "published_numbers[0].confirmed"),
    ],
)  # fmt: skip
def test_an_unknown_key_is_refused_with_the_nearest_allowed_one(tmp_path: Path, old: str, new: str, key: str, suggestion: str) -> None:
    """At the top, in a table and in an array of tables: the key, the file, the nearest key and
    every allowed one (as the file writes them)."""
    message = _error(tmp_path, SUITE.replace(old, new, 1))
    assert message.startswith(f"unknown key {key!r} in suite {tmp_path / 'files.toml'}; did you mean {suggestion}? allowed keys: ")
    assert suggestion in message.split("allowed keys: ")[1].split(", ")


def test_the_keys_a_file_may_hold_are_its_own(tmp_path: Path) -> None:
    """``source`` is where a suite was read from, not a key of the file; the [model] table is
    written ``model``, not ``model_options``."""
    message = _error(tmp_path, 'source = "elsewhere"\n' + SUITE)
    assert message.startswith("unknown key 'source' in suite")
    allowed = message.split("allowed keys: ")[1].split(", ")
    assert "model" in allowed and "model_options" not in allowed and "source" not in allowed
    assert _error(tmp_path, SUITE.replace("[model]\n", "[model_options]\n")).startswith("unknown key 'model_options'")


def test_an_unknown_key_is_named_before_other_mistakes(tmp_path: Path) -> None:
    """A misspelt key leaves its key missing: the line names the misspelling, not the gap."""
    assert _error(tmp_path, SUITE.replace('dataset = "digits"', 'datset = "digits"')).startswith(
        "unknown key 'datset' in suite"
    )


def test_milestones_meet_the_schedule_only_where_the_file_gives_them(tmp_path: Path) -> None:
    """A cosine protocol that leaves milestones out loads as it always did (they keep their
    default, which only "multistep" reads); one that lists milestones is refused."""
    suite = load_suite(_write(tmp_path, SUITE.replace("milestones = []\n", "")))
    assert suite.protocol.lr_schedule == "cosine" and suite.protocol.milestones == TrainConfig().milestones
    message = _error(tmp_path, SUITE.replace("milestones = []", "milestones = [0.5]"))
    assert message.endswith("'protocol.milestones' must be empty with lr_schedule 'cosine' (milestones apply to \"multistep\" only), got [0.5]")
