"""The prunekit command: listing, prune and train, and every user-error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prunekit.masks import Masks
from tests.cli_runner import run_cli as run


def test_list_methods_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`list methods --json` lists the registered methods with descriptions and origins."""
    code, out, _ = run(["list", "methods", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"dense", "snip", "lottery_ticket", "random_ticket"} <= set(rows)
    assert rows["snip"]["plugin"].startswith("prunekit_plugins.methods")


def test_plugins_json_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    """`plugins --json` shows each plugin with version and what it registered."""
    code, out, _ = run(["plugins", "--json"], capsys)
    assert code == 0
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["prunekit_plugins.sgd"]["registered"] == {"trainer": ["sgd"]}
    assert all(not p["errors"] for p in plugins.values())


def test_prune_then_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """prune writes a mask file at the asked sparsity; train uses it and keeps it."""
    out_file = tmp_path / "m.safetensors"
    code, out, err = run(
        ["prune", "--method", "snip", "--model", "digits_mlp", "--sparsity", "0.8", "--out", str(out_file), "--json"],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["sparsity"] == pytest.approx(0.8, abs=1e-4)
    masks, meta = Masks.load(out_file)
    assert masks.sparsity() == pytest.approx(summary["sparsity"])
    assert meta["model"] == "digits_mlp" and json.loads(meta["method"])["name"] == "snip"
    code, out, err = run(["train", "--masks", str(out_file), "--epochs", "2", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["model"] == "digits_mlp" and result["sparsity"] == pytest.approx(0.8, abs=1e-4)
    assert result["final_accuracy"] > 0.5


def test_prune_composed_method(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--scorer/--schedule compose a method; uniform keeps the density in every layer."""
    code, out, err = run(
        ["prune", "--scorer", "random", "--schedule", "uniform", "--model", "digits_mlp", "--sparsity", "0.5",
         "--out", str(tmp_path / "m.safetensors"), "--json"],
        capsys,
    )
    assert code == 0, err
    assert all(abs(layer["density"] - 0.5) < 0.01 for layer in json.loads(out)["layers"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prune", "--method", "snipp", "--sparsity", "0.9"], "did you mean snip"),
        (["prune", "--method", "snip", "--sparsity", "1.0"], "sparsity must be in [0, 1)"),
        (["prune", "--method", "snip", "--sparsity", "-0.1"], "sparsity must be in [0, 1)"),
        (["prune", "--method", "snip", "--sparsity", "0.9", "--model", "resnett18"], "unknown model 'resnett18'"),
        (["prune", "--method", "snip", "--sparsity", "0.9", "--dataset", "cifar10"], "--data-root"),
        (["prune", "--method", "snip", "--sparsity", "0.9", "--check", "randm_labels"], "did you mean random_labels"),
        (["prune", "--method", "magnitude_at_init", "--sparsity", "0.9", "--check", "random_labels"], "does not use data"),
        (["prune", "--scorer", "magnitude", "--scorer-option", "nope=1", "--sparsity", "0.5"], "bad options"),
        (["train", "--masks", "missing.safetensors"], "does not exist"),
        (["train", "--epochs", "-1"], "bad training option"),
        (["list", "bogus"], "unknown kind 'bogus'"),
        (["prune", "--sparsity", "0.5", "--method", "snip", "--bogus"], "No such option"),
        (["train", "--device", "cuda:7"], "CUDA is not available"),
    ],
)
def test_user_errors_are_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every user error: non-zero exit, one line on stderr saying what is wrong, no traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(argv, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.safetensors")), "nothing written on error"


def test_mask_file_for_another_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--model that disagrees with the model a mask file records is one line naming both; a mask
    file that records no model but does not fit the model names the mismatch in one line."""
    masks_file = tmp_path / "m.safetensors"
    assert run(["prune", "--method", "random_uniform", "--model", "digits_mlp", "--sparsity", "0.5", "--out", str(masks_file)], capsys)[0] == 0
    code, _, err = run(["train", "--masks", str(masks_file), "--model", "digits_cnn", "--epochs", "1"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "--model digits_cnn disagrees" in err and "digits_mlp" in err
    bare = tmp_path / "bare.safetensors"
    Masks({"fc1.weight": torch.ones(3, 4, dtype=torch.bool)}).save(bare)
    code, _, err = run(["train", "--masks", str(bare), "--model", "digits_cnn", "--epochs", "1"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "do not fit" in err


def test_layer_collapse_is_an_error_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Global magnitude at 99.9% empties a layer: an error, or a mask file with --allow-collapse."""
    base = ["prune", "--method", "magnitude_at_init", "--model", "digits_cnn", "--sparsity", "0.999", "--out", str(tmp_path / "m.safetensors")]
    code, _, err = run(base, capsys)
    assert code == 1 and "lost every weight" in err
    code, _, err = run([*base, "--allow-collapse"], capsys)
    assert code == 0, err


def test_train_masks_uses_the_files_seed_and_saves_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mask found at --seed 3 trains from seed 3's initialisation without --seed: the weights
    `train --out` writes equal those of seed 3's model under the masks trained by the trainer
    directly, and record what made them; a flag that disagrees with the file names both."""
    import attrs

    from prunekit import pipeline
    from prunekit.plugins import get_plugins

    masks_file, out = tmp_path / "m.safetensors", tmp_path / "w.safetensors"
    argv = ["prune", "--method", "snip", "--model", "digits_mlp", "--sparsity", "0.8", "--seed", "3", "--out", str(masks_file)]
    assert run(argv, capsys)[0] == 0
    code, stdout, err = run(["train", "--masks", str(masks_file), "--epochs", "1", "--out", str(out), "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["seed"] == 3 and json.loads(stdout)["weights"] == str(out)

    from safetensors import safe_open
    from safetensors.torch import load_file

    data = pipeline.load_dataset("digits")
    model = pipeline.build_model("digits_mlp", data, 3)
    masks, _ = Masks.load(masks_file)
    masks.apply(model)
    config = attrs.evolve(get_plugins().registry("dataset").get("digits").default_protocol, epochs=1)
    pipeline.instantiate("trainer", "sgd").fit(model, data, config, masks=masks, seed=3)
    saved = load_file(str(out))
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert (meta["model"], meta["dataset"], meta["seed"], meta["masks_hash"]) == ("digits_mlp", "digits", "3", masks.content_hash())
    assert not list(tmp_path.glob("*.tmp*"))

    for flag, shown in (
        (["--seed", "0"], "--seed 0 disagrees with the mask file"),
        (["--dataset", "synthetic"], "--dataset synthetic disagrees"),
        (["--model-option", "hidden=256"], None),  # an option the file does not record: added
    ):
        code, _, err = run(["train", "--masks", str(masks_file), "--epochs", "0", *flag], capsys)
        if shown is None:
            assert code == 0, err
        else:
            assert code == 1 and err.count("\n") == 1 and shown in err
            assert ("seed 3" in err) if flag[0] == "--seed" else ("dataset digits" in err)


def test_train_model_option_that_disagrees_with_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--model-option with another value than the mask file records is one line naming both."""
    masks_file = tmp_path / "m.safetensors"
    argv = ["prune", "--method", "random_uniform", "--model", "digits_mlp", "--model-option", "hidden=32",
            "--sparsity", "0.5", "--out", str(masks_file)]  # fmt: skip
    assert run(argv, capsys)[0] == 0
    code, _, err = run(["train", "--masks", str(masks_file), "--model-option", "hidden=64", "--epochs", "0"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "--model-option hidden=64 disagrees" in err and "hidden=32" in err
    assert run(["train", "--masks", str(masks_file), "--epochs", "0"], capsys)[0] == 0  # the file's hidden=32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prune", "--method", "snip", "--scorer", "synflow", "--sparsity", "0.9"], "--method snip is a named recipe and --scorer synflow"),
        (["prune", "--method", "snip", "--schedule", "uniform", "--sparsity", "0.9"], "--schedule uniform composes another"),
    ],
)
def test_named_method_with_composition_flags(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A named method with --scorer or --schedule is one line and writes nothing."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(argv, capsys)
    assert code == 1 and err.count("\n") == 1 and message in err
    assert not list(tmp_path.iterdir())


SUITE_HEAD = """
name = "meaning"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0]
methods = ["snip"]
checks = ["none"]
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[protocol]\nepochs = 160\nmilestones = [80, 120]\n", "'protocol.milestones' must be fractions of the training in (0, 1)"),
        ("[protocol]\nepochs = 0\n", "'protocol.epochs' must be a number of epochs > 0"),
        ("[protocol]\nmilestones = [0.75, 0.5]\n", "increasing fractions"),
        ('[protocol]\nlr_schedule = "cosine"\nmilestones = [0.5]\n', 'milestones apply to "multistep" only'),
        ("[protocol]\ngamma = 10.0\n", "'protocol.gamma' must be a decay factor in (0, 1]"),
        ("[protocol]\nepochs = 2\nwarmup_epochs = 2\n", "'protocol.warmup_epochs' must be fewer than the 2 epochs"),
    ],
)
def test_suite_fields_checked_for_meaning(extra: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A suite whose protocol makes no sense is one line naming the key; no store is written."""
    suite = tmp_path / "meaning.toml"
    suite.write_text(SUITE_HEAD + extra)
    code, _, err = run(["bench", "--suite", str(suite), "--db", str(tmp_path / "r.db")], capsys)
    assert code == 1 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "r.db").exists()


def test_suite_epochs_for_milestones_are_named_as_fractions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Milestones written as epochs are explained with the fractions they meant."""
    suite = tmp_path / "meaning.toml"
    suite.write_text(SUITE_HEAD + "[protocol]\nepochs = 160\nmilestones = [80, 120]\n")
    _, _, err = run(["bench", "--suite", str(suite)], capsys)
    assert "epochs [80, 120] of 160 are [0.5, 0.75]" in err


UNREACHABLE = """
from typing import ClassVar
from prunekit.bench.executors import Executor
from prunekit.errors import PrunekitError
from prunekit.hookspecs import hookimpl

class Unreachable(Executor):
    name: ClassVar[str] = "unreachable"
    description: ClassVar[str] = "a cluster that cannot be reached"

    def connect(self):
        raise PrunekitError("cannot connect to the cluster at 'nowhere' (--ray-address)")

    def run(self, cells, *, device, cache_dir):
        raise AssertionError("no cell may run")

@hookimpl
def register_executors(register):
    register(Unreachable)
"""


def test_executor_connection_failure_leaves_the_store_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor that cannot connect fails in one line before the store is opened: a new
    store is not created, an existing one keeps its bytes (no cell marked running)."""
    import hashlib

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "unreachable.py").write_text(UNREACHABLE)
    monkeypatch.setenv("PRUNEKIT_PLUGINS_DIR", str(plugins))
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE_HEAD + "[protocol]\nepochs = 1\n")
    db = tmp_path / "r.db"
    argv = ["bench", "--suite", str(suite), "--db", str(db), "--executor", "unreachable"]
    code, _, err = run(argv, capsys)
    assert code == 1 and err.count("\n") == 1 and "--ray-address" in err
    assert not db.exists()
    from prunekit.bench.store import ResultStore

    ResultStore(db).close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    code, _, err = run(argv, capsys)
    assert code == 1 and hashlib.sha256(db.read_bytes()).hexdigest() == before
    with ResultStore(db, create=False) as store:
        assert store.count() == 0


STARTUP = """
import sys
from prunekit.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "timm", "prunekit_plugins", "scipy", "prunekit.plugins_loaded") if m in sys.modules)
print("LOADED", heavy)
"""


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["prune", "--help"], ["bench", "--help"], ["completion", "bash"]])
def test_fast_start_loads_no_plugins_torch_or_timm(argv: list[str], tmp_path: Path) -> None:
    """--version, --help (of the group and of commands) and the completion script import
    neither torch, timm, scipy nor any plugin."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", STARTUP, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("LOADED []"), done.stdout[-300:]


def _complete(words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What bash completion offers for the last word of ``words``."""
    monkeypatch.setenv("_PRUNEKIT_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    code, out, _ = run([], capsys)
    assert code == 0
    return [line.split(",", 1)[1] for line in out.splitlines()]


def test_completion_offers_method_model_and_suite_names(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Completion offers registered method and check names, timm and prunekit model names,
    suite names, and command names."""
    assert _complete("prunekit prune --method lottery_ticket_r", monkeypatch, capsys) == ["lottery_ticket_rewind"]
    assert set(_complete("prunekit prune --check random_", monkeypatch, capsys)) >= {"random_labels", "random_pixels"}
    assert "cifar_resnet32" in _complete("prunekit prune --model cifar_res", monkeypatch, capsys)
    assert "resnet18" in _complete("prunekit train --model resnet1", monkeypatch, capsys)
    assert "su2020_cifar10" in _complete("prunekit bench --suite su2020", monkeypatch, capsys)
    assert set(_complete("prunekit st", monkeypatch, capsys)) == {"status"}


def test_ray_address_that_cannot_connect(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`--executor ray --ray-address auto` with no cluster running is one line naming
    prunekit's --ray-address (not Ray's own flag), and no store is created."""
    pytest.importorskip("ray", reason="the ray extra is not installed")  # installed in CI by .ci/run
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE_HEAD + "[protocol]\nepochs = 1\n")
    db = tmp_path / "r.db"
    code, _, err = run(["bench", "--suite", str(suite), "--db", str(db), "--executor", "ray", "--ray-address", "auto"], capsys)
    assert code == 1 and err.count("\n") == 1
    assert "--ray-address" in err and "`--address`" not in err
    assert not db.exists()


def test_python_dash_m_prunekit_is_the_same_command_line(tmp_path: Path) -> None:
    """``python -m prunekit`` (for machines where the console script is not on PATH) runs the
    same CLI, with its one-line errors and exit codes."""
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "prunekit", "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert ok.returncode == 0 and ok.stdout.strip().startswith("prunekit, version ")
    bad = subprocess.run([sys.executable, "-m", "prunekit", "bench", "--methods", "no_such_method", "--dry-run"], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert bad.returncode != 0 and "no_such_method" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
