"""Result identity: the key of a cell changes exactly when something that determines its
numbers changes (prunekit.cell_identity.cell_identity)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
import torch

from prunekit import hookimpl
from prunekit.cell import CellSpec
from prunekit.cell_identity import IDENTITY_VERSION, cell_identity
from prunekit.identity import canonical, digest, noop_field
from prunekit.interfaces import Method, Scorer, TrainConfig
from prunekit.plugins import register_plugin, unregister_plugin
from tests.cli_runner import run_cli

QUICK = TrainConfig(epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4, lr_schedule="cosine", milestones=())


def spec(**changes: Any) -> CellSpec:
    """A cell of the quick suite (digits_cnn on digits, 90% sparsity, seed 0)."""
    fields: dict[str, Any] = {
        "model": "digits_cnn", "dataset": "digits", "method": "snip", "check": "none", "sparsity": 0.9, "seed": 0, "protocol": QUICK
    }
    fields.update(changes)
    return CellSpec(**fields)


def key(**changes: Any) -> str:
    return cell_identity(spec(**changes)).key


# --------------------------------------------------------------------- what changes a key
def test_a_method_option_changes_the_key() -> None:
    """lottery_ticket_rewind with another rewinding point is another result."""
    base = key(method="lottery_ticket_rewind")
    assert key(method="lottery_ticket_rewind", method_options={"rewind_point": 0.1}) != base


def test_a_scorer_option_changes_the_key() -> None:
    """SNIP with 5 samples per class instead of its default is another result."""
    assert key(method_options={"scorer_options": {"samples_per_class": 5}}) != key()


def test_a_check_option_changes_the_key() -> None:
    """half_dataset keeping a quarter of the data is another result."""
    base = key(method="lr_rewinding", check="half_dataset")
    assert key(method="lr_rewinding", check="half_dataset", check_options={"fraction": 0.25}) != base


def test_a_trainer_value_changes_the_key() -> None:
    """Any value of the training protocol that differs (here the learning rate) changes the key."""
    assert key(protocol=attrs.evolve(QUICK, lr=0.1)) != key()


def test_sparsity_seed_model_options_and_device_change_the_key() -> None:
    """The sparsity, the seed, a timm option of the model and the device type enter the key."""
    base = key()
    others = {key(sparsity=0.95), key(seed=1), key(model_options={"drop_rate": 0.1})}
    others.add(cell_identity(spec(), device_type="cuda").key)
    assert base not in others and len(others) == 4


def test_where_the_data_lives_does_not_change_the_key() -> None:
    """``data_root`` says where the files are, not what the result is."""
    assert key(data_root="/somewhere/else") == key()


# ------------------------------------------------------- plugin objects: defaults, versions
@pytest.fixture
def plugin_scorer() -> Iterator[Any]:
    """Register a scorer plugin (``toy``) under a chosen class and version; unregister after."""
    names: list[str] = []

    def install(cls: type, version: str) -> None:
        class Plugin:
            __version__ = version

            @hookimpl
            def register_scorers(self, register: Any) -> None:
                register(cls)

            @hookimpl
            def register_methods(self, register: Any) -> None:
                register(Method(name="toy_method", description="toy", family="initial", scorer="toy"))

        for name in names:
            unregister_plugin(name)
        names.append("toy_plugin")
        register_plugin(Plugin(), "toy_plugin")

    yield install
    for name in names:
        unregister_plugin(name)


def _toy(**fields: Any) -> type:
    """A scorer class named ``toy`` with the given attrs fields."""

    def score(self: Any, model: torch.nn.Module, ctx: Any) -> dict[str, torch.Tensor]:
        return {layer.name: torch.ones(layer.shape) for layer in ctx.layers}

    namespace = {"name": "toy", "description": "toy scores", "needs_data": False, "score": score}
    namespace["__annotations__"] = {"name": ClassVar[str], "description": ClassVar[str], "needs_data": ClassVar[bool]}
    for field_name, field in fields.items():
        namespace[field_name] = field
    return attrs.frozen(kw_only=True)(type("Toy", (Scorer,), namespace))


def test_changing_a_default_in_code_changes_the_key(plugin_scorer: Any) -> None:
    """The same scorer, name and version, whose option default changed from 1 to 2: results of
    the old default must not be served as results of the new one."""
    plugin_scorer(_toy(power=attrs.field(default=1.0)), "1.0")
    before = key(method="toy_method")
    plugin_scorer(_toy(power=attrs.field(default=2.0)), "1.0")
    assert key(method="toy_method") != before


def test_a_new_noop_field_at_its_default_keeps_the_key(plugin_scorer: Any) -> None:
    """Adding an option declared with noop_field keeps every key at its default, and changes it
    when set (a plain new field would change every key: that is why new options use it)."""
    plugin_scorer(_toy(power=attrs.field(default=1.0)), "1.0")
    before = key(method="toy_method")
    plugin_scorer(_toy(power=attrs.field(default=1.0), clip=noop_field(None)), "1.0")
    assert key(method="toy_method") == before
    assert key(method="toy_method", method_options={"scorer_options": {"clip": 3.0}}) != before
    plugin_scorer(_toy(power=attrs.field(default=1.0), clip=attrs.field(default=None)), "1.0")
    assert key(method="toy_method") != before


def test_a_plugin_version_changes_the_key(plugin_scorer: Any) -> None:
    """A new release of the plugin that supplies the scorer is another result."""
    cls = _toy(power=attrs.field(default=1.0))
    plugin_scorer(cls, "1.0")
    before = key(method="toy_method")
    plugin_scorer(cls, "1.1")
    assert key(method="toy_method") != before


def test_new_trainconfig_fields_are_noop_fields() -> None:
    """Every TrainConfig field added after the first stored results (anything beyond the
    original eleven) is a noop_field, so the quick suite's keys survive new protocol options."""
    original = {
        "epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay",
        "lr_schedule", "milestones", "gamma", "warmup_epochs",
    }  # fmt: skip
    for field in attrs.fields(TrainConfig):
        if field.name not in original:
            assert field.metadata.get("prunekit.noop_default"), f"TrainConfig.{field.name} is not a noop_field"
    assert set(canonical(QUICK)) == original


# ------------------------------------------------------------------------ hashing itself
def test_digest_is_sha256_of_sorted_compact_json() -> None:
    """The key is SHA-256 of the payload's JSON with sorted keys and no spaces (first 32 hex)."""
    payload = {"b": [1, 2.5, "x"], "a": {"z": None, "y": True}}
    text = '{"a":{"y":true,"z":null},"b":[1,2.5,"x"]}'
    assert digest(payload) == hashlib.sha256(text.encode()).hexdigest()[:32]


def test_payload_names_every_part_and_its_origin() -> None:
    """The payload holds the resolved recipe, the check's options and every part's origin."""
    payload = cell_identity(spec(method="lr_rewinding", check="half_dataset")).payload
    assert payload["identity"] == IDENTITY_VERSION
    assert payload["method"]["recipe"]["rewind"] == "trained"
    assert payload["check"]["options"]["fraction"] == 0.5
    assert payload["scorer"]["name"] == "magnitude" and payload["schedule"]["name"] == "global"
    for part in ("model", "dataset", "method", "trainer", "scorer", "schedule", "check"):
        assert payload[part]["origin"].startswith("prunekit"), part
    json.dumps(payload, allow_nan=False)  # plain JSON, storable as is


# -------------------------------------------------------------------------- pinned keys
PINNED = {
    ("snip", "none"): "8abdf931a3ed84da2c9fc2941159ac05",
    ("lottery_ticket_rewind", "reinit"): "7c3980756d3cc129d1bcb6eb2d325a65",
    ("random_ticket", "layerwise_rearrange"): "652eba82e9386ce292dc7fe68f607297",
}


@pytest.mark.parametrize(("method", "check"), list(PINNED))
def test_pinned_keys(method: str, check: str) -> None:
    """Keys of three real quick-suite cells are pinned: an identity that changes by accident
    (a renamed field, a new field that is not a noop_field, a changed default) fails here.
    Update a pin only for a deliberate change of what produces the result, and say so."""
    assert key(method=method, check=check) == PINNED[(method, check)]


# ---------------------------------------------------------------- through the real CLI
SUITE = """
name = "identity"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0]
methods = ["snip", "random_uniform", "lottery_ticket_rewind"]
checks = ["none"]

[protocol]
epochs = 1
batch_size = 128
lr = 0.05
lr_schedule = "cosine"
"""


def _bench(suite: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = run_cli(["bench", "--suite", str(suite), "--db", str(db), "--json"], capsys)
    assert code == 0, err
    return json.loads(out)["summary"]


def test_a_recipe_edit_reruns_exactly_the_affected_cells(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """bench, then change lottery_ticket_rewind's rewinding point in the suite, then bench
    again: only that method's cell runs, the others are reused, and the two recipes' rows carry
    different protocol fingerprints (reports never pool them)."""
    suite, db = tmp_path / "identity.toml", tmp_path / "r.db"
    suite.write_text(SUITE)
    first = _bench(suite, db, capsys)
    assert (first["ran"], first["reused"]) == (first["total"], 0)
    suite.write_text(SUITE + "\n[method_options.lottery_ticket_rewind]\nrewind_point = 0.2\n")
    second = _bench(suite, db, capsys)
    assert (second["total"], second["ran"]) == (first["total"], 1)
    from prunekit.bench.store import ResultStore

    with ResultStore(db, create=False) as store:
        rows = store.rows()
    lt = [r for r in rows if r.method == "lottery_ticket_rewind"]
    assert len(lt) == 2 and len({r.key for r in lt}) == 2 and len({r.protocol for r in lt}) == 2
    assert all(r.mask_hash and r.dense_accuracy is not None for r in lt)
    assert lt[1].identity["method"]["recipe"]["rewind_point"] == 0.2


def test_a_plugin_upgrade_reruns_its_cells_and_marks_old_rows_stale(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], plugin_scorer: Any
) -> None:
    """bench with a plugin's method at version 1.0, upgrade the plugin to 1.1, bench again: only
    its cell runs again; `prunekit report` marks the 1.0 row stale and keeps it out of the
    statistics."""
    cls = _toy(power=attrs.field(default=1.0))
    plugin_scorer(cls, "1.0")
    suite, db = tmp_path / "identity.toml", tmp_path / "r.db"
    suite.write_text(SUITE.replace('"lottery_ticket_rewind"', '"toy_method"'))
    first = _bench(suite, db, capsys)
    plugin_scorer(cls, "1.1")
    second = _bench(suite, db, capsys)
    assert (second["total"], second["ran"], second["reused"]) == (first["total"], 1, first["total"] - 1)
    code, out, err = run_cli(["report", "--db", str(db), "--json", "--no-plots"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["status_counts"] == {"done": first["total"], "stale": 1}, report["status_counts"]
    assert "toy_method" in {r["method"] for r in report["leaderboard"]}



def test_dataset_options_change_the_key_and_their_defaults_do_not() -> None:
    """cifar10 normalised with the authors' constants is another result; naming the default
    normalization explicitly is the same result as leaving it out."""
    base = key(model="cifar_resnet20", dataset="cifar10")
    assert key(model="cifar_resnet20", dataset="cifar10", dataset_options={"normalization": "grasp_code"}) != base
    assert key(model="cifar_resnet20", dataset="cifar10", dataset_options={"normalization": "dataset"}) == base


def test_naming_a_default_option_is_the_same_recipe() -> None:
    """A suite that writes smart_ratio's default rounding explicitly, or SNIP's default batch
    rule, keys its cells as one that leaves them out."""
    ticket = key(method="random_ticket")
    assert key(method="random_ticket", method_options={"schedule_options": {"rounding": "floor"}}) == ticket
    assert key(method_options={"scorer_options": {"batch_rule": "auto"}}) == key()
