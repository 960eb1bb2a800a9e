"""Every bad input gets one clear line, a non-zero exit, no traceback, and no file touched.

The table below is walked through the real CLI (in process, as a shell would call it), each case
in a fresh working folder holding the fixture files. After each command: the exit code is not
0, stderr holds exactly one ``error:`` line and no traceback, and every file of the folder (the
fixtures included) is byte-identical, with nothing added.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
import torch

from prunekit.masks import Masks
from tests.cli_runner import run_cli

BIG = str(2**66)
FOREIGN = "foreign.sqlite"
SUITE_OK = """
name = "t"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0]
methods = ["snip"]
checks = ["none"]
[protocol]
epochs = 1
"""

# (id, argv); {d} is the case's working folder
CASES: list[tuple[str, list[str]]] = [
    # list / plugins / the group
    ("unknown-command", ["nope"]),
    ("list-unknown-kind", ["list", "nonsense"]),
    ("list-extra-argument", ["list", "methods", "extra"]),
    ("plugins-dir-missing", ["--plugins-dir", "{d}/no-such-folder", "plugins"]),
    ("strict-broken-plugin", ["--strict-plugins", "--plugins-dir", "{d}/broken_plugins", "list"]),
    # prune: names
    ("prune-no-sparsity", ["prune", "--method", "snip"]),
    ("prune-no-method", ["prune", "--sparsity", "0.9"]),
    ("prune-unknown-method", ["prune", "--method", "snipp", "--sparsity", "0.9"]),
    ("prune-unknown-scorer", ["prune", "--scorer", "nope", "--sparsity", "0.9"]),
    ("prune-unknown-schedule", ["prune", "--scorer", "snip", "--schedule", "nope", "--sparsity", "0.9"]),
    ("prune-unknown-check", ["prune", "--method", "snip", "--sparsity", "0.9", "--check", "nope"]),
    ("prune-check-not-applicable", ["prune", "--method", "snip", "--sparsity", "0.9", "--check", "half_dataset"]),
    ("prune-unknown-model", ["prune", "--method", "snip", "--sparsity", "0.9", "--model", "resnet1"]),
    ("prune-unknown-dataset", ["prune", "--method", "snip", "--sparsity", "0.9", "--dataset", "digitz"]),
    ("prune-unknown-trainer", ["prune", "--method", "lottery_ticket", "--sparsity", "0.9", "--trainer", "nope"]),
    # prune: numbers
    ("prune-sparsity-one", ["prune", "--method", "snip", "--sparsity", "1.0"]),
    ("prune-sparsity-negative", ["prune", "--method", "snip", "--sparsity", "-0.1"]),
    ("prune-sparsity-text", ["prune", "--method", "snip", "--sparsity", "abc"]),
    ("prune-sparsity-nan", ["prune", "--method", "snip", "--sparsity", "nan"]),
    ("prune-rounds-zero", ["prune", "--scorer", "synflow", "--rounds", "0", "--sparsity", "0.9"]),
    ("prune-rounds-negative", ["prune", "--scorer", "synflow", "--rounds", "-1", "--sparsity", "0.9"]),
    ("prune-seed-huge", ["prune", "--method", "snip", "--sparsity", "0.9", "--seed", BIG]),
    ("prune-seed-negative", ["prune", "--method", "snip", "--sparsity", "0.9", "--seed", "-1"]),
    ("prune-epochs-negative", ["prune", "--method", "lottery_ticket", "--sparsity", "0.9", "--epochs", "-1"]),
    # prune: options
    ("prune-scorer-option-unknown", ["prune", "--method", "snip", "--sparsity", "0.9", "--scorer-option", "nope=1"]),
    ("prune-scorer-option-bad-value", ["prune", "--method", "snip", "--sparsity", "0.9", "--scorer-option", "samples_per_class=-1"]),
    ("prune-scorer-option-no-equals", ["prune", "--method", "snip", "--sparsity", "0.9", "--scorer-option", "samples_per_class"]),
    ("prune-schedule-option-unknown", ["prune", "--method", "random_ticket", "--sparsity", "0.9", "--schedule-option", "x=1"]),
    # prune: data, devices, paths
    ("prune-cifar-no-root", ["prune", "--method", "snip", "--sparsity", "0.9", "--dataset", "cifar10"]),
    ("prune-cifar-missing-root", ["prune", "--method", "snip", "--sparsity", "0.9", "--dataset", "cifar10", "--data-root", "{d}/nothing"]),
    ("prune-device-meta", ["prune", "--method", "snip", "--sparsity", "0.9", "--device", "meta"]),
    ("prune-device-nonsense", ["prune", "--method", "snip", "--sparsity", "0.9", "--device", "gpu0"]),
    ("prune-out-unwritable", ["prune", "--method", "snip", "--sparsity", "0.9", "--out", "/proc/prunekit/m.safetensors"]),
    ("prune-out-is-folder", ["prune", "--method", "snip", "--sparsity", "0.9", "--out", "{d}/folder"]),
    ("prune-cache-dir-is-file", ["prune", "--method", "lottery_ticket", "--sparsity", "0.9", "--cache-dir", "{d}/notes.txt"]),
    ("prune-input-size-mismatch", ["prune", "--method", "snip", "--sparsity", "0.9", "--model", "vit_tiny_patch16_224"]),
    # train
    ("train-masks-missing", ["train", "--masks", "{d}/none.safetensors"]),
    ("train-masks-not-a-mask", ["train", "--masks", "{d}/notes.txt"]),
    ("train-masks-other-model", ["train", "--masks", "{d}/mlp_masks.safetensors", "--model", "digits_cnn"]),
    ("train-epochs-negative", ["train", "--epochs", "-1"]),
    ("train-batch-zero", ["train", "--batch-size", "0"]),
    ("train-lr-negative", ["train", "--lr", "-0.1"]),
    ("train-lr-text", ["train", "--lr", "abc"]),
    ("train-weight-decay-negative", ["train", "--weight-decay", "-1"]),
    ("train-unknown-schedule", ["train", "--lr-schedule", "nope"]),
    ("train-unknown-trainer", ["train", "--trainer", "nope"]),
    ("train-seed-huge", ["train", "--seed", BIG]),
    ("train-device-meta", ["train", "--device", "meta"]),
    # bench
    ("bench-unknown-suite", ["bench", "--suite", "quik"]),
    ("bench-suite-file-missing", ["bench", "--suite", "{d}/none.toml"]),
    ("bench-suite-not-toml", ["bench", "--suite", "{d}/broken.toml"]),
    ("bench-suite-unknown-key", ["bench", "--suite", "{d}/unknown_key.toml"]),
    ("bench-suite-negative-epochs", ["bench", "--suite", "{d}/negative_epochs.toml"]),
    ("bench-suite-unknown-optimizer", ["bench", "--suite", "{d}/unknown_optimizer.toml"]),
    ("bench-suite-bad-precision", ["bench", "--suite", "{d}/bad_precision.toml"]),
    ("bench-suite-unknown-method-table", ["bench", "--suite", "{d}/unknown_method_table.toml"]),
    ("bench-suite-unknown-method-option", ["bench", "--suite", "{d}/unknown_method_option.toml"]),
    ("bench-suite-unknown-reference-method", ["bench", "--suite", "{d}/unknown_reference.toml"]),
    ("bench-suite-bad-published-numbers", ["bench", "--suite", "{d}/bad_published.toml"]),
    ("bench-unknown-method", ["bench", "--suite", "{d}/ok.toml", "--methods", "snipp"]),
    ("bench-unknown-check", ["bench", "--suite", "{d}/ok.toml", "--checks", "nope"]),
    ("bench-sparsity-out-of-range", ["bench", "--suite", "{d}/ok.toml", "--sparsities", "1.5"]),
    ("bench-sparsity-text", ["bench", "--suite", "{d}/ok.toml", "--sparsities", "abc"]),
    ("bench-seed-negative", ["bench", "--suite", "{d}/ok.toml", "--seeds", "-1"]),
    ("bench-seed-huge", ["bench", "--suite", "{d}/ok.toml", "--seeds", BIG]),
    ("bench-db-is-folder", ["bench", "--suite", "{d}/ok.toml", "--db", "{d}/folder"]),
    ("bench-db-unwritable", ["bench", "--suite", "{d}/ok.toml", "--db", "/proc/prunekit/r.db"]),
    ("bench-db-foreign-sqlite", ["bench", "--suite", "{d}/ok.toml", "--db", "{d}/" + FOREIGN]),
    ("bench-db-text-file", ["bench", "--suite", "{d}/ok.toml", "--db", "{d}/notes.txt"]),
    ("bench-unknown-executor", ["bench", "--suite", "{d}/ok.toml", "--executor", "nope"]),
    ("bench-jobs-zero", ["bench", "--suite", "{d}/ok.toml", "--executor", "processes", "--jobs", "0"]),
    ("bench-device-meta", ["bench", "--suite", "{d}/ok.toml", "--device", "meta"]),
    ("bench-out-unwritable", ["bench", "--suite", "{d}/ok.toml", "--out", "/proc/prunekit/report"]),
    ("bench-cifar-missing-root", ["bench", "--suite", "su2020_cifar10", "--data-root", "{d}/nothing"]),
    # report
    ("report-db-missing", ["report", "--db", "{d}/none.db"]),
    ("report-db-foreign-sqlite", ["report", "--db", "{d}/" + FOREIGN]),
    ("report-db-text-file", ["report", "--db", "{d}/notes.txt"]),
    ("report-unknown-format", ["report", "--db", "{d}/none.db", "--format", "docx"]),
    ("report-confidence-out-of-range", ["report", "--db", "{d}/none.db", "--confidence", "2"]),
    ("report-tolerance-negative", ["report", "--db", "{d}/none.db", "--tolerance", "-1"]),
]


def _fixtures(folder: Path) -> None:
    """The files some cases point at: a text file, a foreign SQLite file, broken suites, a mask
    file of digits_mlp, a folder, a broken plugin."""
    (folder / "notes.txt").write_text("just text\n")
    db = sqlite3.connect(folder / FOREIGN)
    db.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes VALUES (1, 'x');")
    db.commit()
    db.close()
    (folder / "ok.toml").write_text(SUITE_OK)
    (folder / "broken.toml").write_text("name = [unclosed\n")
    (folder / "unknown_key.toml").write_text(SUITE_OK + "colour = 'blue'\n")
    (folder / "negative_epochs.toml").write_text(SUITE_OK.replace("epochs = 1", "epochs = -1"))
    (folder / "unknown_optimizer.toml").write_text(SUITE_OK + 'optimizer = "lion"\n')
    (folder / "bad_precision.toml").write_text(SUITE_OK + 'precision = "fp8"\n')
    (folder / "unknown_method_table.toml").write_text(SUITE_OK + "[method_options.snipp]\nrounds = 2\n")
    (folder / "unknown_method_option.toml").write_text(SUITE_OK + "[method_options.snip]\nroundz = 2\n")
    (folder / "unknown_reference.toml").write_text(
        SUITE_OK.replace("[protocol]", 'reference_method = "random_tickt"\n[protocol]')
    )
    (folder / "bad_published.toml").write_text(
        SUITE_OK + '[[published_numbers]]\nsource = "s"\nmodel = "digits_mlp"\nmethod = "snip"\nsparsities = [0.8]\naccuracies = []\n'
    )
    (folder / "folder").mkdir()
    (folder / "broken_plugins").mkdir()
    (folder / "broken_plugins" / "broken.py").write_text("raise ImportError('this plugin is broken')\n")
    Masks({"fc1.weight": torch.ones(3, 4, dtype=torch.bool)}).save(folder / "mlp_masks.safetensors")


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
        if "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(("argv"), [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line on stderr, non-zero exit, no traceback, no file created or changed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PRUNEKIT_PLUGINS_DIR", raising=False)
    monkeypatch.delenv("PRUNEKIT_STRICT_PLUGINS", raising=False)
    _fixtures(tmp_path)
    before = _snapshot(tmp_path)
    code, out, err = run_cli([a.replace("{d}", str(tmp_path)) for a in argv], capsys)
    assert code != 0, f"exit 0 for a bad input; stdout: {out[-500:]}"
    assert "Traceback" not in err + out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    others = [line for line in err.splitlines() if line.strip() and not line.startswith(("error:", "warning:"))]
    assert len(errors) == 1 and not others, f"expected one error line, got:\n{err}"
    assert _snapshot(tmp_path) == before, "a file was created or changed"


def test_the_table_is_large() -> None:
    """At least 60 distinct bad inputs are covered."""
    assert len({c[0] for c in CASES}) == len(CASES) >= 60
