"""Weights & Biases the W&B way: `prunekit bench --wandb` offline through the CLI, checked by
reading the runs' files back (never a server); the sink's settings and errors with a fake
wandb module."""

from __future__ import annotations

import contextlib
import io
import json
import struct
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from prunekit.callbacks import Progress
from prunekit.errors import PrunekitError
from prunekit.hookspecs import hookimpl
from prunekit.plugins import register_plugin, unregister_plugin
from prunekit_plugins.sgd import SGDTrainer

SUITE = """
name = "wandb_tiny"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0]
methods = ["snip"]
checks = ["none"]
trainer = "spy_sgd"

[protocol]
epochs = 2
batch_size = 128
lr = 0.05
lr_schedule = "cosine"
"""
WANDB_VARIABLES = (
    "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_RUN_GROUP",
    "WANDB_RUN_ID", "WANDB_NAME", "WANDB_TAGS", "WANDB_JOB_TYPE", "WANDB_NOTES", "WANDB_RESUME",
)  # fmt: skip


# ------------------------------------------------------------------ reading offline runs
def _wandb_records(path: Path) -> list[Any]:
    """Decode an offline run's transaction log (``run-<id>.wandb``): a 7-byte header
    (":W&B", 0xBEE1, version), then LevelDB-log blocks of 32 KiB holding protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if len(data) < 7:
        return []
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


def _items(items: Any) -> dict[str, Any]:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def _history(records: list[Any]) -> list[dict[str, Any]]:
    return [_items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]


def read_run(run_dir: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Project, group, job type, name, config, history, summary, artifacts and exit code of
    one offline run. wandb-core writes the log asynchronously, so wait for its "exit" record."""
    (log,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_records(log)
        if (
            any(r.WhichOneof("record_type") == "exit" for r in records)
            or time.monotonic() > deadline
        ):
            break
        time.sleep(0.05)
    out: dict[str, Any] = {
        "history": _history(records),
        "summary": {},
        "artifacts": [],
        "exit_code": None,
    }
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(
                project=run.project,
                group=run.run_group,
                job_type=run.job_type,
                name=run.display_name,
            )
            out["config"] = _items(run.config.update)
        elif kind == "summary":
            out["summary"].update(_items(record.summary.update))
        elif kind == "artifact":
            a = record.artifact
            out["artifacts"].append(
                {
                    "type": a.type,
                    "name": a.name,
                    "files": {e.path: e.local_path for e in a.manifest.contents},
                    "metadata": json.loads(a.metadata or "{}"),
                }
            )
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


# ----------------------------------------------------------------- a trainer that looks
LIVE: list[dict[str, Any]] = []  # what the spy saw in the open run's file during epoch 1


def _live_history() -> dict[str, Any]:
    """The current W&B run (the cell's) and the epochs its transaction log holds, waiting up to
    30 s for epoch 1 to be written (wandb-core flushes its log every few seconds)."""
    import wandb

    run = wandb.run
    if run is None:
        return {"key": None, "epochs": []}
    (log,) = Path(run.dir).parent.glob("run-*.wandb")
    deadline = time.monotonic() + 30.0
    while True:
        epochs = [h.get("epoch") for h in _history(_wandb_records(log))]
        if 1 in epochs or time.monotonic() > deadline:
            return {"key": run.config.get("key"), "epochs": epochs}
        time.sleep(0.1)


@attrs.frozen(kw_only=True)
class SpyTrainer(SGDTrainer):
    """sgd, which after epoch 1 (the cell still training) reads the cell's W&B run file."""

    name: ClassVar[str] = "spy_sgd"
    description: ClassVar[str] = "sgd that reads the open W&B run's file after epoch 1"

    def fit(
        self, model: Any, data: Any, config: Any, *, callbacks: Any = (), **kwargs: Any
    ) -> Any:
        def spy(record: dict[str, float]) -> None:
            if record.get("epoch") == 1:
                LIVE.append(_live_history())

        return SGDTrainer.fit(self, model, data, config, callbacks=[*callbacks, Progress(spy)], **kwargs)


class SpyPlugin:
    @hookimpl
    def register_trainers(self, register: Any) -> None:
        register(SpyTrainer)


@contextlib.contextmanager
def spy_trainer() -> Iterator[None]:
    register_plugin(SpyPlugin(), "spy_trainer_plugin")
    try:
        yield
    finally:
        unregister_plugin("spy_trainer_plugin")


def bench(argv: list[str]) -> tuple[int, str, str]:
    """`prunekit bench argv` in this process: (exit code, stdout, stderr)."""
    from prunekit.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["bench", *argv])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def _environment(mp: pytest.MonkeyPatch, root: Path, **variables: str) -> None:
    """Only the given WANDB_* variables, wandb's own folders under ``root``, no credentials."""
    for name in WANDB_VARIABLES:
        mp.delenv(name, raising=False)
    mp.setenv("NETRC", str(root / "netrc"))  # none there unless a test writes one
    mp.setenv("WANDB_SILENT", "true")
    for name in ("DATA", "CACHE", "CONFIG", "ARTIFACT"):
        mp.setenv(f"WANDB_{name}_DIR", str(root / f"wandb-{name.lower()}"))
    for name, value in variables.items():
        mp.setenv(name, value)
    mp.chdir(root)


@pytest.fixture(scope="module")
def offline_bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`prunekit bench --wandb --wandb-log-weights` on one cell with WANDB_MODE=offline,
    WANDB_PROJECT and WANDB_DIR set, no other --wandb-* flag and no credentials; its runs read
    back, and its stored row."""
    root = tmp_path_factory.mktemp("wandb_bench")
    (root / "suite.toml").write_text(SUITE)
    LIVE.clear()
    with pytest.MonkeyPatch.context() as mp, spy_trainer():
        _environment(
            mp,
            root,
            WANDB_MODE="offline",
            WANDB_PROJECT="env-project",
            WANDB_DIR=str(root / "wandb-env"),
        )
        argv = ["--suite", "suite.toml", "--db", "r.db", "--out", "report", "--wandb", "--wandb-log-weights"]
        code, out, err = bench([*argv, "--json"])
    from prunekit.bench.store import ResultStore

    with ResultStore(root / "r.db", create=False) as store:
        rows = list(store.rows())
    runs = [read_run(d) for d in sorted((root / "wandb-env" / "wandb").glob("offline-run-*"))]
    return {
        "root": root,
        "code": code,
        "err": err,
        "out": out,
        "runs": runs,
        "rows": rows,
        "live": list(LIVE),
    }


def _cell_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["job_type"] != "report"]


def test_offline_wandb_honours_wandb_mode_project_and_dir(offline_bench: dict[str, Any]) -> None:
    """WANDB_MODE=offline without --wandb-mode needs no login; the runs are offline runs under
    WANDB_DIR in WANDB_PROJECT, grouped by the suite; nothing lands in ./wandb or the report."""
    assert offline_bench["code"] == 0, offline_bench["err"]
    root: Path = offline_bench["root"]
    runs = offline_bench["runs"]
    assert len(runs) == 2 and {r["job_type"] for r in runs} == {"none", "report"}
    assert all(r["project"] == "env-project" and r["group"] == "wandb_tiny" for r in runs)
    assert not (root / "wandb").exists() and not list((root / "report").glob("wandb*"))


def test_runs_carry_the_protocol_recipe_and_a_mask_artifact(offline_bench: dict[str, Any]) -> None:
    """A cell's run config holds the full training protocol (lr, epochs, batch size, optimiser,
    defaults resolved), the method's recipe and the scorer's options; its masks are an artifact
    whose file holds the masks the store's row describes; its trained weights (asked for) are
    another, zero wherever the masks prune."""
    from safetensors.torch import load_file

    from prunekit.masks import Masks

    (run,) = _cell_runs(offline_bench["runs"])
    (row,) = [r for r in offline_bench["rows"] if r.status == "done"]
    config = run["config"]
    assert config["key"] == row.key and config["method"] == "snip" and config["sparsity"] == 0.8
    protocol = config["protocol"]
    assert protocol["lr"] == 0.05 and protocol["epochs"] == 2 and protocol["batch_size"] == 128
    assert (
        protocol["lr_schedule"] == "cosine"
        and protocol["optimizer"] == "sgd"
        and protocol["momentum"] == 0.9
    )
    assert config["recipe"]["scorer"] == "snip" and config["recipe"]["schedule"] == "global"
    assert "batch_rule" in config["options"]["scorer"]
    assert (
        config["trainer"] == "spy_sgd"
        and config["environment"]["test_size"] == row.environment["test_size"]
    )
    artifacts = {a["type"]: a for a in run["artifacts"]}
    assert set(artifacts) == {"masks", "model"}
    artifact = artifacts["masks"]
    assert set(artifact["files"]) == {"masks.safetensors"}
    assert artifact["metadata"]["mask_hash"] == row.mask_hash
    masks, _ = Masks.load(artifact["files"]["masks.safetensors"])
    assert masks.content_hash() == row.mask_hash
    assert masks.sparsity() == pytest.approx(row.achieved_sparsity)
    weights = load_file(artifacts["model"]["files"]["weights.safetensors"])
    assert set(masks) <= set(weights)
    for name, mask in masks.items():
        assert not weights[name][~mask.bool()].any(), name  # pruned weights stayed zero
        assert weights[name][mask.bool()].abs().sum() > 0, name  # kept weights trained
    assert (
        run["summary"]["final_accuracy"] == pytest.approx(row.final_accuracy)
        and run["exit_code"] == 0
    )


def test_wandb_logs_per_epoch_history_while_the_cell_runs(offline_bench: dict[str, Any]) -> None:
    """After epoch 1, with epoch 2 still to train, the cell's run was open (its config names
    the cell) and its file already held epoch 1's record; at the end it holds both epochs."""
    (row,) = [r for r in offline_bench["rows"] if r.status == "done"]
    (seen,) = offline_bench["live"]
    assert seen["key"] == row.key and 1 in seen["epochs"] and 2 not in seen["epochs"]
    (run,) = _cell_runs(offline_bench["runs"])
    assert [h["epoch"] for h in run["history"]] == [1, 2]
    assert run["history"][-1]["test_accuracy"] == pytest.approx(row.history[-1]["test_accuracy"])


def test_report_run_holds_tables_figures_and_the_report(offline_bench: dict[str, Any]) -> None:
    """The report run logs the leaderboard, verdicts, protocol and labels as Tables, each
    figure as an Image, and the report folder as an artifact (every file its manifest lists)."""
    (report,) = [r for r in offline_bench["runs"] if r["job_type"] == "report"]
    (logged,) = report["history"]
    for table in ("leaderboard", "verdicts", "effects", "protocol", "software", "labels"):
        assert logged[f"{table}/_type"] == "table-file", table
    assert logged["leaderboard/nrows"] == 2  # the sparsity's board and the overall one
    for figure in ("accuracy_vs_sparsity", "layer_density"):
        assert logged[f"figures/{figure}/_type"] == "image-file"
    (artifact,) = [
        a for a in report["artifacts"] if a["type"] == "report"
    ]  # W&B keeps Tables as artifacts too
    manifest = json.loads((offline_bench["root"] / "report" / ".prunekit-report.json").read_text())
    assert artifact["type"] == "report" and sorted(artifact["files"]) == sorted(manifest["files"])
    assert report["config"]["protocol"][0]["settings"]["epochs"] == "2"


def test_flags_override_the_environment_and_reused_cells_are_logged_on_request(
    offline_bench: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming the study with WANDB_MODE=online and WANDB_PROJECT set but --wandb-mode offline,
    --wandb-project and --wandb-dir given: the flags win (no login asked), the reused cell is
    logged (marked reused, its history replayed) with --wandb-log-reused, and the runs stay in
    the suite's group."""
    root: Path = offline_bench["root"]
    _environment(monkeypatch, root, WANDB_MODE="online", WANDB_PROJECT="env-project")
    argv = [
        "--suite",
        "suite.toml",
        "--db",
        "r.db",
        "--out",
        "report",
        "--wandb",
        "--wandb-mode",
        "offline",
    ]
    argv += [
        "--wandb-project",
        "flag-project",
        "--wandb-dir",
        "wandb-flag",
        "--wandb-log-reused",
        "--json",
    ]
    with spy_trainer():
        code, out, err = bench(argv)
    assert code == 0, err
    assert json.loads(out)["summary"]["reused"] == 1
    runs = [read_run(d) for d in sorted((root / "wandb-flag" / "wandb").glob("offline-run-*"))]
    assert {r["project"] for r in runs} == {"flag-project"} and {r["group"] for r in runs} == {
        "wandb_tiny"
    }
    (reused,) = _cell_runs(runs)
    assert reused["config"]["reused"] is True and [h["epoch"] for h in reused["history"]] == [1, 2]
    assert reused["artifacts"] == []  # the masks stayed with the bench that trained them


# ---------------------------------------------------------------------- a fake wandb
class FakeRun:
    def __init__(self, owner: FakeWandb, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.logged: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.exit_code: int | None = None
        owner.runs.append(self)

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, data: dict[str, Any]) -> None:
        self.logged.append(dict(data))

    def log_artifact(self, artifact: Any) -> None:
        pass

    def finish(self, exit_code: int | None = None) -> None:
        self.exit_code = exit_code


class FakeWandb(types.ModuleType):
    """Records what the sink asks of wandb; no network, no files."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.__version__ = "0.31.0"
        self.runs: list[FakeRun] = []

    def init(self, **kwargs: Any) -> FakeRun:
        return FakeRun(self, kwargs)


@pytest.fixture
def fake_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWandb:
    module = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    _environment(monkeypatch, tmp_path)
    return module


def test_wandb_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without wandb installed the sink says how to install it."""
    from prunekit.bench.wandb_sink import WandbSink

    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
    with pytest.raises(PrunekitError, match=r"pip install 'prunekit\[wandb\]'"):
        WandbSink(mode="offline", bench_id="b")


def test_wandb_online_needs_a_login(
    tmp_path: Path, fake_wandb: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online mode (the flag, or WANDB_MODE) without WANDB_API_KEY or a netrc entry fails at
    construction and says how to log in or log offline; WANDB_MODE=offline needs no login, but
    the flag overrides it; an API key or a netrc entry for the W&B host is enough."""
    from prunekit.bench.wandb_sink import WandbSink

    for mode_variable, flag in (("online", None), ("offline", "online")):
        monkeypatch.setenv("WANDB_MODE", mode_variable)
        with pytest.raises(PrunekitError) as err:
            WandbSink(mode=flag, bench_id="b")
        assert "wandb login" in str(err.value) and "WANDB_MODE=offline" in str(err.value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert WandbSink(bench_id="b").mode == "offline"
    assert fake_wandb.runs == []
    monkeypatch.setenv("WANDB_MODE", "online")
    (tmp_path / "netrc").write_text(
        "machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n"
    )
    (tmp_path / "netrc").chmod(0o600)
    assert WandbSink(bench_id="b").mode == "online"
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    WandbSink(bench_id="b")
    with pytest.raises(PrunekitError, match="unknown W&B mode"):
        WandbSink(mode="cloud", bench_id="b")


def test_wandb_variables_apply_and_flags_override(
    fake_wandb: FakeWandb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WANDB_PROJECT, WANDB_RUN_GROUP, WANDB_JOB_TYPE and WANDB_TAGS reach every run and
    WANDB_NAME prefixes its name; the flags override project and group; without either the
    project is prunekit and the group the suite; WANDB_RUN_ID (one run) is refused."""
    from prunekit.bench.wandb_sink import WandbSink
    from tests.test_bench_reports import cell

    row = cell("snip", "none", 0.9, 0, 0.93)
    monkeypatch.setenv("WANDB_MODE", "offline")
    plain = WandbSink(bench_id="b", suite="su2020")
    assert (plain.project, plain.group) == ("prunekit", "su2020")
    variables = {
        "WANDB_PROJECT": "p-env",
        "WANDB_RUN_GROUP": "g-env",
        "WANDB_JOB_TYPE": "sweep",
        "WANDB_TAGS": "a,b",
        "WANDB_NAME": "study",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    WandbSink(bench_id="b", suite="su2020").log_cell(row)
    kwargs = fake_wandb.runs[-1].kwargs
    assert (kwargs["project"], kwargs["group"], kwargs["job_type"], kwargs["mode"]) == (
        "p-env",
        "g-env",
        "sweep",
        "offline",
    )
    assert (
        {"a", "b", "snip"} <= set(kwargs["tags"])
        and kwargs["name"].startswith("study-")
        and kwargs["dir"] is None
    )
    WandbSink(bench_id="b", suite="su2020", project="p-flag", group="g-flag", dir="w").log_cell(row)
    kwargs = fake_wandb.runs[-1].kwargs
    assert (kwargs["project"], kwargs["group"], kwargs["dir"]) == ("p-flag", "g-flag", "w")
    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    with pytest.raises(PrunekitError, match="WANDB_RUN_ID is set"):
        WandbSink(bench_id="b")
