"""Benchmark reports (terminal, files, plots), published numbers, `prunekit report`, W&B."""

from __future__ import annotations

import csv
import json
import os
import struct
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from prunekit import atomic as atomic_module
from prunekit.bench import report as report_module
from prunekit.bench.published import PUBLISHED, compare_published, lookup
from prunekit.bench.records import ResultRow
from prunekit.bench.report import print_terminal_report, write_reports
from prunekit.errors import PrunekitError
from tests.cli_runner import run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODEL, DATASET, PROTOCOL = "cifar_vgg19_bn", "cifar10", "proto-A"


def cell(method: str, check: str, sparsity: float, seed: int, accuracy: float | None, **kw: Any) -> ResultRow:
    """A done cell of the VGG19 / CIFAR-10 synthetic benchmark (accuracy as a fraction)."""
    fields: dict[str, Any] = dict(
        key=f"{method}/{check}/{sparsity}/{seed}",
        suite="synthetic",
        model=MODEL,
        dataset=DATASET,
        method=method,
        check=check,
        sparsity=sparsity,
        seed=seed,
        protocol=PROTOCOL,
        status="done",
        final_accuracy=accuracy,
        best_accuracy=None if accuracy is None else accuracy + 0.001,
        final_loss=0.3,
        achieved_sparsity=sparsity,
        history=[{"epoch": e, "test_accuracy": (accuracy or 0.0) * e / 3, "lr": 0.1} for e in (1, 2, 3)],
        environment={"torch": "2.x", "device": "cpu"},
        bench_id="bench-1",
    )
    fields.update(kw)
    return ResultRow(**fields)


def synthetic_rows() -> list[ResultRow]:
    """3 seeds; lrr loses 5 points under half_dataset (passes); snip is unchanged under
    random_labels (fails); random_ticket at 90 % close to Su et al.'s 93.77; one failed and
    one not-applicable cell."""
    rows = []
    offsets = (0.0, 0.001, 0.0015)
    for sparsity, drop in ((0.9, 0.0), (0.95, 0.01)):
        for seed, off in enumerate(offsets):
            rows.append(cell("random_ticket", "none", sparsity, seed, 0.937 + off - drop))
            rows.append(cell("snip", "none", sparsity, seed, 0.930 + off - drop))
            rows.append(cell("snip", "random_labels", sparsity, seed, 0.930 + off - drop + 0.0005))
            rows.append(cell("lrr", "none", sparsity, seed, 0.940 + off - drop))
            rows.append(cell("lrr", "half_dataset", sparsity, seed, 0.890 + off - drop))
    rows += [cell("dense", "none", 0.0, seed, 0.942 + off) for seed, off in enumerate(offsets)]
    rows.append(
        cell("synflow", "none", 0.9, 0, None, status="failed", error="RuntimeError: CUDA out of memory\n  at line 3")
    )
    rows.append(cell("random_ticket", "random_labels", 0.9, 0, None, status="not_applicable"))
    return rows


# --------------------------------------------------------------------------------- files
def test_write_reports_writes_every_file(tmp_path: Path) -> None:
    """md, html, csv, json and both plots; CSV one row per cell; JSON verdicts as built."""
    rows = synthetic_rows()
    written = write_reports(rows, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["report.md", "report.html", "results.csv", "report.json", "accuracy_vs_sparsity.png", "check_effects.png"]
    )
    assert all(p.parent == tmp_path / "out" and p.is_file() for p in written)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]

    with open(tmp_path / "out" / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert {r["key"] for r in table} == {r.key for r in rows}
    failed = next(r for r in table if r["status"] == "failed")
    assert failed["method"] == "synflow" and failed["final_accuracy"] == ""

    payload = json.loads((tmp_path / "out" / "report.json").read_text())
    verdicts = {(v["method"], v["check"]): v["verdict"] for v in payload["verdicts"]}
    assert verdicts == {("lrr", "half_dataset"): "passes", ("snip", "random_labels"): "fails"}
    assert len(payload["cells"]) == len(rows)
    assert payload["failures"] == [
        {"error": "RuntimeError: CUDA out of memory", "count": 1, "keys": ["synflow/none/0.9/0"]}
    ]
    board = [r for r in payload["leaderboard"] if r["sparsity"] == 0.9]
    assert [r["method"] for r in board] == ["lrr", "random_ticket", "snip", "dense"]
    assert board[-1]["reference"] is True
    assert board[2]["vs_random_ticket"]["mean"] == pytest.approx(-0.7)

    for name in ("accuracy_vs_sparsity.png", "check_effects.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 100 and height > 100

    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| 1 | lrr | 3 |" in markdown
    assert "![accuracy_vs_sparsity](accuracy_vs_sparsity.png)" in markdown
    assert "1 of 35 cells failed: 1 × RuntimeError: CUDA out of memory" in markdown

    page = (tmp_path / "out" / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert '<img src="accuracy_vs_sparsity.png"' in page and '<img src="check_effects.png"' in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert '<td class="v-passes">passes (2/2)</td>' in page


def test_formats_and_plots_can_be_chosen(tmp_path: Path) -> None:
    """Only the asked formats are written; plots=False writes no PNG; a bad format is refused."""
    written = write_reports(synthetic_rows(), tmp_path, formats=("csv",), plots=False)
    assert [p.name for p in written] == ["results.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    with pytest.raises(PrunekitError, match="unknown report format"):
        write_reports(synthetic_rows(), tmp_path, formats=("pdf",))


def test_nothing_half_written_when_rendering_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renderer that raises leaves no file at all: everything is rendered before writing."""

    def broken(data: Any) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(report_module, "render_json", broken)
    with pytest.raises(RuntimeError, match="boom"):
        write_reports(synthetic_rows(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename fails the old report stays whole and no temporary file is left."""
    target = tmp_path / "report.md"
    target.write_text("previous report")

    def refuse(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_module.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_reports(synthetic_rows(), tmp_path, formats=("md",), plots=False)
    assert target.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_terminal_report(tmp_path: Path) -> None:
    """Leaderboard with Δ vs random ticket, coloured verdict matrix, and the failure line."""
    console = Console(record=True, width=220, color_system="truecolor")
    print_terminal_report(synthetic_rows(), console)
    text = console.export_text(clear=False)
    assert "cifar_vgg19_bn on cifar10 (protocol proto-A): sparsity 90%" in text
    assert "-0.70 (no seed variance)" in text  # snip vs random ticket, paired: equal per seed
    assert "passes (2/2)" in text and "fails (2/2)" in text
    assert "1 of 35 cells failed: 1 × RuntimeError: CUDA out of memory; 1 not applicable" in text
    assert "93.88" in text and "93.77" in text  # measured (best epoch, as published) beside published
    styled = console.export_html(inline_styles=True)
    assert "passes (2/2)" in styled and "#008000" in styled  # green


# --------------------------------------------------------------------------- published
def test_published_numbers_table() -> None:
    """The paper-spec numbers are keyed by our names; SNIP/GraSP and dense are unconfirmed."""
    assert lookup("cifar10", "cifar_vgg19_bn", "random_ticket", 0.9).accuracy == 93.77  # type: ignore[union-attr]
    assert lookup("cifar100", "cifar_resnet32", "random_ticket", 0.98).accuracy == 60.11  # type: ignore[union-attr]
    snip = lookup("cifar100", "cifar_vgg19_bn", "snip", 0.98)
    assert snip is not None and snip.accuracy == 58.46 and not snip.confirmed
    dense = lookup("cifar10", "cifar_resnet32", "dense", 0.0)
    assert dense is not None and dense.accuracy == 94.80 and not dense.confirmed
    assert lookup("cifar10", "cifar_vgg19_bn", "synflow", 0.9) is None
    assert len(PUBLISHED) == 2 * 6 + 4 * 6 + 4


def test_published_comparison_for_matching_rows() -> None:
    """The published numbers are best-epoch accuracies, compared with best_accuracy: random_ticket
    at 90 % has best 93.80 / 93.90 / 93.95 beside 93.77, inside the 95 % t interval of the mean
    (t(0.975, 2) = 4.303); at 95 % (92.88 vs 93.42) it differs; dense (94.38 vs 94.23) is
    consistent; one seed gives "too few seeds"."""
    comparisons = {(c.method, c.sparsity): c for c in compare_published(synthetic_rows())}
    assert set(comparisons) == {
        ("random_ticket", 0.9), ("random_ticket", 0.95), ("snip", 0.9), ("snip", 0.95), ("dense", 0.0)
    }
    rt = comparisons[("random_ticket", 0.9)]
    assert rt.metric == "best_accuracy"
    assert rt.n == 3 and rt.measured_mean == pytest.approx(93.8833, abs=1e-3)
    assert rt.difference == pytest.approx(93.88333 - 93.77, abs=1e-3)
    assert (rt.measured_min, rt.measured_max) == (pytest.approx(93.80), pytest.approx(93.95))
    half = 4.302653 * 0.076376 / 3**0.5
    assert (rt.ci_low, rt.ci_high) == (pytest.approx(93.88333 - half, abs=1e-4), pytest.approx(93.88333 + half, abs=1e-4))
    assert rt.verdict == "consistent with published"
    assert comparisons[("random_ticket", 0.95)].verdict == "differs from published"
    assert comparisons[("dense", 0.0)].verdict == "consistent with published"
    single = compare_published([cell("random_ticket", "none", 0.9, 0, 0.93)])
    assert single[0].verdict == "too few seeds" and single[0].measured_sd is None and single[0].ci_low is None


# ------------------------------------------------------------------------- the command
class FakeStore:
    """Stands in for the driver's ResultStore(path).rows(suite=None, status=None)."""

    rows_by_path: dict[str, list[ResultRow]] = {}

    def __init__(self, path: Any, *, create: bool = True) -> None:
        self.path = str(path)

    def __enter__(self) -> FakeStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def rows(self, suite: str | None = None, status: str | None = None) -> list[ResultRow]:
        rows = self.rows_by_path.get(self.path, [])
        return [r for r in rows if (suite is None or r.suite == suite) and (status is None or r.status == status)]


@pytest.fixture
def fake_store(monkeypatch: pytest.MonkeyPatch) -> type[FakeStore]:
    module = types.ModuleType("prunekit.bench.store")
    module.ResultStore = FakeStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "prunekit.bench.store", module)
    monkeypatch.setattr(FakeStore, "rows_by_path", {})
    return FakeStore




def test_report_command_regenerates_files(
    tmp_path: Path, fake_store: type[FakeStore], capsys: pytest.CaptureFixture[str]
) -> None:
    """`prunekit report --db ... --format md --format json --json` writes those two plus the
    plots into --out and prints the verdicts as JSON."""
    db = tmp_path / "results.sqlite"
    db.write_bytes(b"")
    fake_store.rows_by_path[str(db)] = synthetic_rows()
    out_dir = tmp_path / "rep"
    code, out, err = run_cli(
        ["report", "--db", str(db), "--out", str(out_dir), "--format", "md", "--format", "json", "--json"], capsys
    )
    assert code == 0, err
    payload = json.loads(out)
    assert {(v["method"], v["check"], v["verdict"]) for v in payload["verdicts"]} == {
        ("lrr", "half_dataset", "passes"),
        ("snip", "random_labels", "fails"),
    }
    assert "cells" not in payload
    assert sorted(Path(p).name for p in payload["files"]) == sorted(
        ["report.md", "report.json", "accuracy_vs_sparsity.png", "check_effects.png"]
    )
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(Path(p).name for p in payload["files"])


def test_report_command_default_out_and_terminal(
    tmp_path: Path, fake_store: type[FakeStore], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --out the files go to prunekit-report/ beside the store (where `prunekit bench`
    writes them); the terminal gets the tables."""
    db = tmp_path / "results.sqlite"
    db.write_bytes(b"")
    fake_store.rows_by_path[str(db)] = synthetic_rows()
    code, out, err = run_cli(["report", "--db", str(db), "--no-plots", "--tolerance", "0.5"], capsys)
    assert code == 0, err
    assert "sanity-check verdicts" in out and "wrote 4 files to" in out
    assert (tmp_path / "prunekit-report" / "results.csv").is_file()
    assert not (tmp_path / "prunekit-report" / "check_effects.png").exists()
    assert json.loads((tmp_path / "prunekit-report" / "report.json").read_text())["settings"]["tolerance_points"] == 0.5


def test_report_command_errors_are_one_line(
    tmp_path: Path, fake_store: type[FakeStore], capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing store, an empty store, an empty suite and a bad confidence: one line each."""
    code, out, err = run_cli(["report", "--db", str(tmp_path / "missing.sqlite")], capsys)
    assert code == 1 and err.count("\n") == 1 and "no results store at" in err
    db = tmp_path / "results.sqlite"
    db.write_bytes(b"")
    code, _, err = run_cli(["report", "--db", str(db)], capsys)
    assert code == 1 and err.count("\n") == 1 and "holds no results" in err
    fake_store.rows_by_path[str(db)] = synthetic_rows()
    code, _, err = run_cli(["report", "--db", str(db), "--suite", "other"], capsys)
    assert code == 1 and "holds no results for suite 'other'" in err
    code, _, err = run_cli(["report", "--db", str(db), "--confidence", "95"], capsys)
    assert code == 1 and "--confidence" in err
    assert not (tmp_path / "prunekit-report").exists()


def test_report_command_reads_the_real_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows recorded in the driver's SQLite store come back through `prunekit report` intact:
    the CSV has one row per cell and the JSON the known verdicts."""
    from prunekit.bench.store import ResultStore

    db = tmp_path / "results.db"
    rows = synthetic_rows()
    with ResultStore(db) as store:
        for r in rows:
            store.record(r)
    code, out, err = run_cli(["report", "--db", str(db), "--format", "csv", "--json"], capsys)
    assert code == 0, err
    assert {(v["method"], v["check"], v["verdict"]) for v in json.loads(out)["verdicts"]} == {
        ("lrr", "half_dataset", "passes"),
        ("snip", "random_labels", "fails"),
    }
    with open(tmp_path / "prunekit-report" / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


# ------------------------------------------------------------------------ W&B, faked
class FakeRun:
    def __init__(self, owner: FakeWandb, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.history: list[tuple[dict[str, Any], int | None]] = []
        self.summary: dict[str, Any] = {}
        self.finished = False
        owner.runs.append(self)

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        self.history.append((dict(data), step))

    def __enter__(self) -> FakeRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finished = True


class FakeTable:
    def __init__(self, columns: list[str], data: list[list[Any]]) -> None:
        self.columns, self.data = columns, data


class FakeImage:
    def __init__(self, path: str) -> None:
        self.path = path


class FakeWandb(types.ModuleType):
    """Records what the sink does; no network, no files."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.__version__ = "0.31.0"
        self.runs: list[FakeRun] = []
        self.Table = FakeTable
        self.Image = FakeImage

    def init(self, **kwargs: Any) -> FakeRun:
        return FakeRun(self, kwargs)


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> FakeWandb:
    module = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def test_wandb_one_run_per_cell_and_a_report_run(tmp_path: Path, fake_wandb: FakeWandb) -> None:
    """Each done or failed cell is one run (group = bench id, job_type = check, config = spec
    + protocol + environment, per-epoch history, final metrics in the summary); finish adds
    one report run with the leaderboard and verdicts as Tables and the plots as Images."""
    from prunekit.bench.wandb_sink import WandbSink

    rows = synthetic_rows()
    sink = WandbSink(project="proj", entity="team", mode="offline", bench_id="bench-1", dir=tmp_path / "wandb")
    logged = [sink.log_cell(r) for r in rows]
    assert logged.count(True) == len(rows) - 1  # the not-applicable cell is no run
    assert len(fake_wandb.runs) == len(rows) - 1
    first = fake_wandb.runs[0]
    assert first.finished
    kw = first.kwargs
    assert (kw["project"], kw["entity"], kw["mode"], kw["group"]) == ("proj", "team", "offline", "bench-1")
    assert kw["job_type"] == "none" and kw["dir"] == str(tmp_path / "wandb")
    assert kw["name"] == "cifar_vgg19_bn-cifar10-random_ticket-none-s0.9-seed0"
    assert kw["config"]["protocol"] == PROTOCOL and kw["config"]["key"] == rows[0].key
    assert kw["config"]["environment"] == {"torch": "2.x", "device": "cpu"}
    assert kw["config"]["sparsity"] == 0.9 and kw["config"]["seed"] == 0
    assert [step for _, step in first.history] == [1, 2, 3]
    assert first.history[-1][0]["test_accuracy"] == pytest.approx(0.937)
    assert first.summary["final_accuracy"] == pytest.approx(0.937) and first.summary["status"] == "done"
    assert {r.kwargs["job_type"] for r in fake_wandb.runs} == {"none", "random_labels", "half_dataset"}
    failed = next(r for r in fake_wandb.runs if r.summary["status"] == "failed")
    assert "CUDA out of memory" in failed.summary["error"] and "final_accuracy" not in failed.summary

    sink.finish(rows, tmp_path / "report")
    report_run = fake_wandb.runs[-1]
    assert report_run.kwargs["job_type"] == "report" and report_run.kwargs["group"] == "bench-1"
    ((payload, _),) = report_run.history
    assert isinstance(payload["leaderboard"], FakeTable) and isinstance(payload["verdicts"], FakeTable)
    verdicts = {(row[3], row[4]): row[5] for row in payload["verdicts"].data}
    assert verdicts == {("lrr", "half_dataset"): "passes", ("snip", "random_labels"): "fails"}
    assert "method" in payload["leaderboard"].columns and len(payload["leaderboard"].data) > 0
    images = {k: v for k, v in payload.items() if isinstance(v, FakeImage)}
    assert set(images) == {"plots/accuracy_vs_sparsity", "plots/check_effects"}
    assert all(Path(v.path).read_bytes().startswith(PNG_SIGNATURE) for v in images.values())
    assert report_run.summary["cells_failed"] == 1


def test_wandb_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without wandb installed the sink says how to install it."""
    from prunekit.bench.wandb_sink import WandbSink

    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    with pytest.raises(PrunekitError, match=r"pip install 'prunekit\[wandb\]'"):
        WandbSink(project="p", mode="offline", bench_id="b")


def test_wandb_online_needs_a_login(
    tmp_path: Path, fake_wandb: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online mode without WANDB_API_KEY or a netrc entry fails at construction and suggests
    `wandb login` or offline mode; an API key or a netrc entry for the W&B host is enough."""
    from prunekit.bench.wandb_sink import WandbSink

    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(PrunekitError) as err:
        WandbSink(project="p", mode="online", bench_id="b")
    assert "wandb login" in str(err.value) and "--wandb-mode offline" in str(err.value)
    assert fake_wandb.runs == []

    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    os.chmod(tmp_path / "netrc", 0o600)
    WandbSink(project="p", mode="online", bench_id="b")
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    WandbSink(project="p", mode="online", bench_id="b")
    with pytest.raises(PrunekitError, match="unknown W&B mode"):
        WandbSink(project="p", mode="cloud", bench_id="b")


# ------------------------------------------------------------------------ W&B, for real
def _wandb_records(path: Path) -> list[Any]:
    """Decode an offline run's transaction log (``run-<id>.wandb``): a 7-byte header
    (":W&B", 0xBEE1, version), then LevelDB-log blocks of 32 KiB holding protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # still being written
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        elif kind in (3, 4):  # middle, last
            pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _read_offline_run(run_dir: Path) -> dict[str, Any]:
    """Group, job type, name, config, history and summary of one offline run. wandb-core
    writes the log asynchronously and may still be flushing it after ``finish`` returns, so
    wait (up to 20 s) until the closing "exit" record is there."""
    (log,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + 20.0
    while True:
        records = _wandb_records(log) if log.stat().st_size >= 7 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out: dict[str, Any] = {"history": [], "summary": {}}
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["job_type"] = record.run.run_group, record.run.job_type
            out["name"], out["project"] = record.run.display_name, record.run.project
            out["config"] = {i.key: json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
    return out


def test_wandb_offline_for_real(tmp_path: Path) -> None:
    """With the real wandb in offline mode (files under tmp_path, no server), the runs'
    transaction logs hold the group, job type, config, per-epoch history and summary, and the
    report run holds the Tables and Images."""
    pytest.importorskip("wandb")
    from prunekit.bench.wandb_sink import WandbSink

    rows = [r for r in synthetic_rows() if r.sparsity == 0.9 and r.seed == 0 and r.status == "done"]
    rows = [r for r in rows if r.method == "lrr"]  # lrr clean + lrr half_dataset
    sink = WandbSink(project="prunekit-test", mode="offline", bench_id="bench-x", dir=tmp_path)
    for r in rows:
        assert sink.log_cell(r)
    sink.finish(rows, tmp_path / "report")
    run_dirs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 3
    runs = [_read_offline_run(d) for d in run_dirs]
    cells = {r["job_type"]: r for r in runs}
    assert set(cells) == {"none", "half_dataset", "report"}
    assert all(r["group"] == "bench-x" and r["project"] == "prunekit-test" for r in runs)
    clean = cells["none"]
    assert clean["name"] == "cifar_vgg19_bn-cifar10-lrr-none-s0.9-seed0"
    assert clean["config"]["protocol"] == PROTOCOL and clean["config"]["method"] == "lrr"
    assert clean["config"]["environment"] == {"torch": "2.x", "device": "cpu"}
    assert [h["_step"] for h in clean["history"]] == [1, 2, 3]
    assert clean["history"][-1]["test_accuracy"] == pytest.approx(0.94)
    assert clean["summary"]["final_accuracy"] == pytest.approx(0.94)
    assert cells["half_dataset"]["summary"]["final_accuracy"] == pytest.approx(0.89)
    (logged,) = cells["report"]["history"]  # nested values come flattened: "leaderboard/_type"
    assert logged["leaderboard/_type"] == "table-file" and logged["leaderboard/nrows"] == 2
    assert logged["verdicts/_type"] == "table-file" and logged["verdicts/nrows"] == 1
    assert logged["plots/accuracy_vs_sparsity/_type"] == "image-file"
    assert logged["plots/check_effects/_type"] == "image-file"
