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
    code, out, err = run(argv, capsys)
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
