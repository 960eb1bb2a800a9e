"""No code runs from a file prunekit reads back: checkpoints and the dense cache are loaded with
``weights_only=True``; a malicious pickle is refused with one line before it can act."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import torch

from prunekit.callbacks import Checkpoint, Snapshots
from prunekit.data import DataBundle
from prunekit.dense import DenseCache, DenseRun
from prunekit.errors import PrunekitError
from prunekit.interfaces import TrainConfig
from prunekit.pipeline import instantiate
from prunekit.testing import tiny_data, tiny_mlp

ROOT = Path(__file__).resolve().parents[1]
CONFIG = TrainConfig(epochs=1, batch_size=16, lr=0.05, lr_schedule="constant")


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a harmless side effect a test can see."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def _malicious(path: Path, marker: Path, *, legacy: bool) -> Path:
    content = {"format": "prunekit.train-checkpoint/1", "model": _Payload(marker), "epoch": 1}
    if legacy:  # a plain pickle, not torch's zip container
        with open(path, "wb") as f:
            pickle.dump(content, f)
    else:
        torch.save(content, path)
    return path


@pytest.fixture(scope="module")
def data() -> DataBundle:
    return tiny_data()


@pytest.mark.parametrize("legacy", [False, True], ids=["torch-zip", "plain-pickle"])
def test_malicious_training_checkpoint_is_refused_without_running(
    data: DataBundle, tmp_path: Path, legacy: bool
) -> None:
    """Resuming from a crafted checkpoint raises one line naming the file, and the payload's
    side effect (creating a file) never happens; the model is left untouched."""
    marker = tmp_path / "payload-ran"
    ckpt = _malicious(tmp_path / "run.ckpt", marker, legacy=legacy)
    model = tiny_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PrunekitError) as err:
        instantiate("trainer", "sgd").fit(model, data, CONFIG, callbacks=[Checkpoint(ckpt)])
    message = str(err.value)
    assert "\n" not in message and "refusing to load" in message and str(ckpt) in message
    assert not marker.exists()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_garbage_and_foreign_checkpoints_are_one_line_errors(data: DataBundle, tmp_path: Path) -> None:
    """A file that is not a checkpoint (garbage bytes, an empty file, another program's torch
    file) gives one line that says to delete it."""
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 8)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path in (garbage, empty, foreign):
        with pytest.raises(PrunekitError) as err:
            instantiate("trainer", "sgd").fit(tiny_mlp(), data, CONFIG, callbacks=[Checkpoint(path)])
        assert "\n" not in str(err.value) and "delete it" in str(err.value), path


def test_checkpoint_of_another_run_is_refused(data: DataBundle, tmp_path: Path) -> None:
    """A checkpoint written under one protocol is not resumed under another."""
    trainer = instantiate("trainer", "sgd")
    ckpt = tmp_path / "run.ckpt"
    trainer.fit(tiny_mlp(), data, CONFIG, callbacks=[Checkpoint(ckpt)])
    assert torch.load(ckpt, weights_only=True)["format"] == "prunekit.train-checkpoint/1"
    other = TrainConfig(epochs=1, batch_size=16, lr=0.01, lr_schedule="constant")
    with pytest.raises(PrunekitError, match="belongs to another run"):
        trainer.fit(tiny_mlp(), data, other, callbacks=[Checkpoint(ckpt)])


def test_checkpoint_with_every_optimizer_state_loads_weights_only(data: DataBundle, tmp_path: Path) -> None:
    """Checkpoints of AdamW with fp16's gradient scaler, snapshots and history hold plain data
    only: ``torch.load(weights_only=True)`` reads them."""
    config = TrainConfig(
        epochs=1, batch_size=16, lr=0.01, optimizer="adamw", precision="fp16", lr_schedule="constant"
    )
    ckpt = tmp_path / "run.ckpt"
    instantiate("trainer", "sgd").fit(tiny_mlp(), data, config, callbacks=[Checkpoint(ckpt), Snapshots([0, 1])])
    state = torch.load(ckpt, weights_only=True)
    assert set(state["snapshots"]) == {0, 1}
    assert "exp_avg_sq" in next(iter(state["optimizer"]["state"].values()))
    assert state["scaler"]["scale"] > 0


def test_malicious_dense_cache_file_is_refused(tmp_path: Path) -> None:
    """A crafted file in the dense cache is refused with one line; its payload never runs."""
    cache = DenseCache(tmp_path / "cache")

    def compute(steps: list[int] | None = None) -> DenseRun:
        state = {"w": torch.ones(2)}
        return DenseRun(states={0: state}, final=state, steps=1, final_accuracy=0.5, best_accuracy=0.5)

    spec = {"model": "m", "seed": 0}
    cache.get_or_compute(spec, compute)
    stored = next((tmp_path / "cache").glob("dense-*.pt"))
    marker = tmp_path / "payload-ran"
    _malicious(stored, marker, legacy=False)
    with pytest.raises(PrunekitError) as err:
        DenseCache(tmp_path / "cache").get_or_compute(spec, compute)
    assert "\n" not in str(err.value) and "refusing to load" in str(err.value)
    assert not marker.exists()


def _unsafe_loads(source: str) -> list[int]:
    """Lines of ``torch.load(...)`` calls (or ``load`` imported from torch) that do not pass
    ``weights_only=True`` literally."""
    tree = ast.parse(source)
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization")
        for alias in node.names
        if alias.name == "load"
    }
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        is_torch_load = (
            isinstance(func, ast.Attribute)
            and func.attr == "load"
            and ast.unparse(func.value) in ("torch", "torch.serialization")
        ) or (isinstance(func, ast.Name) and func.id in imported)
        if not is_torch_load:
            continue
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        if not safe:
            bad.append(node.lineno)
    return bad


def test_no_torch_load_without_weights_only_in_the_sources() -> None:
    """Every ``torch.load`` in prunekit/, plugins/ and benchmarks/ passes ``weights_only=True``
    (a grep, run in CI with the tests)."""
    files = [p for folder in ("prunekit", "plugins", "benchmarks") for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 20  # the scan sees the package
    offenders = [
        f"{path.relative_to(ROOT)}:{line}" for path in files for line in _unsafe_loads(path.read_text())
    ]
    assert offenders == [], "torch.load without weights_only=True: " + ", ".join(offenders)


def test_the_source_scan_finds_unsafe_loads() -> None:
    """Control: the scan flags the forms it must catch and passes the safe one."""
    assert _unsafe_loads("import torch\ntorch.load(p)\n") == [2]
    assert _unsafe_loads("import torch\ntorch.load(p, weights_only=False)\n") == [2]
    assert _unsafe_loads("import torch\ntorch.load(\n    p,\n    map_location='cpu',\n)\n") == [2]
    assert _unsafe_loads("from torch import load as tl\ntl(p)\n") == [2]
    assert _unsafe_loads("import torch\ntorch.serialization.load(p)\n") == [2]
    assert _unsafe_loads("import torch\ntorch.load(p, map_location='cpu', weights_only=True)\n") == []
