"""Weights & Biases sink for ``prunekit bench``, the way W&B's own integrations work.

The SQLite results store stays the canonical record; W&B is a view of it, kept the way users
of Lightning's ``WandbLogger`` and the HF Trainer's ``WandbCallback`` expect:

- **Settings**: every ``WANDB_*`` variable and wandb's settings files (``wandb offline``,
  ``wandb init``) apply; the ``--wandb-*`` flags override them, and nothing else does. The
  project is ``--wandb-project``, else ``WANDB_PROJECT`` (or the settings file), else
  ``prunekit``; the mode ``--wandb-mode``, else wandb's own (``WANDB_MODE``, settings file,
  online); the folder ``--wandb-dir``, else wandb's own (``WANDB_DIR``, else ``./wandb``).
  ``WANDB_JOB_TYPE`` and ``WANDB_TAGS`` apply to every run; ``WANDB_NAME`` prefixes the run
  names (one name cannot name every cell's run). ``WANDB_RUN_ID`` names one run and is
  refused: a bench logs one run per cell.
- **Runs**: one per cell, grouped by ``--wandb-group``, else ``WANDB_RUN_GROUP``, else the
  suite's name, so a resumed study stays one group; job type: the check. With an executor
  that streams (``local``), the run opens when the cell starts and the trainer's per-epoch
  records are logged as they come (``epoch`` is the x axis); a cell that crashes ends its run
  with exit code 1 and its error. With other executors the run is logged when the cell's
  result arrives, its history replayed.
- **Config**: the cell (model, dataset, method, check, sparsity, seed), the full training
  protocol (lr, epochs, batch size, optimiser, schedule, …), the method's resolved recipe, the
  options of the model, data, scorer, schedule and check, each part's origin, the environment.
- **Artifacts**: the cell's masks (``masks.safetensors``, type ``masks``) and, with
  ``log_weights``, the trained weights (type ``model``): from streaming executors, where the
  masks are in this process.
- **Reused cells** (done in an earlier bench) are logged on request (``log_reused``), marked
  ``reused`` in their config.
- **Report run** (job type ``report``): the leaderboard, verdicts, effects, protocol and
  software tables, the figures, and the report folder as an artifact (type ``report``).

wandb is an optional dependency (``pip install 'prunekit[wandb]'``) imported only when a sink
is built. The constructor fails fast, before the driver trains anything, when wandb is missing
or when online mode has no credentials. Credentials are looked up without network and without
prompting: ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, the netrc entry for the W&B host
(``$NETRC`` or ``~/.netrc``; host from ``WANDB_BASE_URL``, default ``https://api.wandb.ai``),
then wandb's own non-interactive lookup where the installed version has one.
"""

from __future__ import annotations

import netrc
import os
import re
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from prunekit.bench.records import ResultRow
from prunekit.errors import PrunekitError

if TYPE_CHECKING:
    from prunekit.bench.report import ReportData

MODES = ("online", "offline", "disabled")
DEFAULT_PROJECT = "prunekit"
DEFAULT_BASE_URL = "https://api.wandb.ai"
LOGGED_STATUSES = ("done", "failed", "diverged")  # not_applicable, running and stale cells are not runs
SUMMARY_FIELDS = (
    "final_accuracy",
    "best_accuracy",
    "final_loss",
    "achieved_sparsity",
    "effective_sparsity",
    "dense_accuracy",
    "tie_fraction",
    "mask_hash",
    "wall_time",
    "status",
    "error",
)
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}


def _netrc_has_login(base_url: str) -> bool:
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    host = urlsplit(base_url).netloc or base_url
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _wandb_knows_login(wandb: Any, base_url: str) -> bool:
    """wandb's own credential lookup (env, netrc, settings files), where this version offers a
    non-interactive, network-free one (wandb >= 0.22: ``wbauth.authenticate_session``)."""
    try:
        from wandb.sdk.lib import wbauth

        auth = wbauth.authenticate_session(
            host=base_url, source="prunekit bench", prompt=False, verify=False, update_session=False
        )
    except (ImportError, AttributeError, TypeError):  # an older or different wandb
        return False
    except Exception:  # noqa: BLE001 - malformed credentials count as none; wandb.init would refuse them too
        return False
    return auth is not None


def has_credentials(wandb: Any) -> bool:
    """True if online mode would find credentials; never touches the network or prompts."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    base_url = os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
    return _netrc_has_login(base_url) or _wandb_knows_login(wandb, base_url)


def _reinit_value(wandb: Any) -> Any:
    """``reinit="finish_previous"`` where wandb knows it (0.19.10+); ``True`` before."""
    numbers = [int(x) for x in re.findall(r"\d+", str(getattr(wandb, "__version__", "")))[:3]]
    if numbers and tuple(numbers) < (0, 19, 10):
        return True
    return "finish_previous"


def _env_settings() -> dict[str, Any]:
    """The settings wandb reads from ``WANDB_*`` variables (where wandb's own view is missing)."""
    env = os.environ
    mode = env.get("WANDB_MODE")
    if env.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"):
        mode = "disabled"
    tags = tuple(t.strip() for t in env.get("WANDB_TAGS", "").split(",") if t.strip())
    return {
        "mode": mode,
        "project": env.get("WANDB_PROJECT"),
        "run_group": env.get("WANDB_RUN_GROUP"),
        "run_job_type": env.get("WANDB_JOB_TYPE"),
        "run_tags": tags,
        "run_name": env.get("WANDB_NAME"),
        "run_id": env.get("WANDB_RUN_ID"),
    }


def wandb_settings(wandb: Any) -> dict[str, Any]:
    """wandb's own view of its settings (``WANDB_*`` variables and settings files), read
    without starting anything. wandb reads the environment once per process; when it changed
    since (a second command in one process), that stale view is dropped first, so the
    environment of this command rules. Falls back to the variables alone."""
    try:
        wandb_setup = wandb.sdk.wandb_setup  # the given module's own (a stand-in has none)
        current = getattr(wandb_setup, "_singleton", None)
        if current is not None and current.did_environment_change():
            wandb.teardown()
        s = wandb_setup.singleton().settings
        return {
            "mode": s.mode,
            "project": s.project,
            "run_group": s.run_group,
            "run_job_type": s.run_job_type,
            "run_tags": tuple(s.run_tags or ()),
            "run_name": s.run_name,
            "run_id": s.run_id,
        }
    except (ImportError, AttributeError, TypeError, ValueError):
        return _env_settings()


def run_name(row: ResultRow) -> str:
    return f"{row.model}-{row.dataset}-{row.method}-{row.check}-s{row.sparsity:g}-seed{row.seed}"


def _mapping(value: Any) -> Any:
    """Stored canonical option pairs (``[[key, value], ...]``) as nested dicts for the config."""
    if isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value):
        return {k: _mapping(v) for k, v in value}
    if isinstance(value, Mapping):
        return {str(k): _mapping(v) for k, v in value.items()}
    return value


def cell_config(row: ResultRow, bench_id: str = "", *, reused: bool = False) -> dict[str, Any]:
    """The W&B config of a cell's run: the cell, the full training protocol (defaults resolved),
    the method's recipe, every part's options and origin, and the environment."""
    from prunekit.bench.report.data import train_config

    spec, ident = row.spec or {}, row.identity or {}
    protocol = spec.get("protocol") or ident.get("protocol")
    parts = {p: ident[p] for p in ("model", "dataset", "scorer", "schedule", "check", "trainer") if isinstance(ident.get(p), Mapping)}
    method: Mapping[str, Any] = ident["method"] if isinstance(ident.get("method"), Mapping) else {}
    options = {p: _mapping(entry.get("options", {})) for p, entry in parts.items() if p not in ("trainer",)}
    if "dataset" in parts:
        options["dataset"] = {k: _mapping(v) for k, v in parts["dataset"].items() if k not in ("name", "origin")}
    if spec.get("method_options"):
        options["method_overrides"] = _mapping(spec["method_options"])
    return {
        "key": row.key,
        "suite": row.suite,
        "bench_id": row.bench_id or bench_id,
        "model": row.model,
        "dataset": row.dataset,
        "method": row.method,
        "check": row.check,
        "sparsity": row.sparsity,
        "seed": row.seed,
        "trainer": spec.get("trainer") or (parts.get("trainer") or {}).get("name"),
        "protocol_hash": row.protocol,
        "protocol": train_config(protocol) if isinstance(protocol, Mapping) else {},
        "recipe": _mapping(method.get("recipe", {})),
        "options": options,
        "origins": {p: entry.get("origin") for p, entry in {**parts, "method": method}.items() if entry.get("origin")},
        "prunekit": ident.get("prunekit"),
        "environment": dict(row.environment),
        "reused": reused,
    }


class CellEvents:
    """What a streaming executor reports while a cell runs (see ``Executor.streams``), turned
    into W&B calls: the run opens at ``started``, each ``epoch`` record is logged, ``trained``
    keeps the masks (and weights) for the cell's artifacts. An error of W&B inside the trainer's
    callback is kept (``errors``), never allowed to fail the cell."""

    def __init__(self, sink: WandbSink, row_for: Callable[[Any], ResultRow]) -> None:
        self.sink = sink
        self.row_for = row_for
        self._keys: dict[Any, str] = {}

    def started(self, spec: Any) -> None:
        row = self.row_for(spec)
        self._keys[spec] = row.key
        self.sink.start_cell(row)

    def epoch(self, spec: Any, record: Mapping[str, Any]) -> None:
        try:
            self.sink.log_epoch(self._keys[spec], record)
        except Exception as err:  # noqa: BLE001 - logging must not fail the cell
            self.sink.errors.append(f"{type(err).__name__}: {err}")

    def trained(self, spec: Any, masks: Any, model: Any) -> None:
        try:
            self.sink.keep_trained(self._keys[spec], masks, model)
        except Exception as err:  # noqa: BLE001 - logging must not fail the cell
            self.sink.errors.append(f"{type(err).__name__}: {err}")


class WandbSink:
    """Logs benchmark cells to W&B: ``start_cell`` / ``log_epoch`` while a cell runs (through
    :meth:`events`), ``log_cell`` when it ends, ``finish`` once with every row of the bench.

    Every argument left None takes wandb's own setting (environment, settings files); see the
    module docstring. ``WANDB_SILENT`` is set to ``true`` unless already set.
    """

    def __init__(
        self,
        *,
        bench_id: str,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        dir: str | Path | None = None,
        group: str | None = None,
        suite: str | None = None,
        log_reused: bool = False,
        log_weights: bool = False,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise PrunekitError(f"unknown W&B mode {mode!r}; use one of {', '.join(MODES)}")
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb
        except ImportError:
            raise PrunekitError(
                "Weights & Biases logging needs the wandb package: pip install 'prunekit[wandb]'"
            ) from None
        settings = wandb_settings(wandb)
        if settings.get("run_id"):
            raise PrunekitError(
                f"WANDB_RUN_ID is set ({settings['run_id']}), but a bench logs one W&B run per cell: unset it "
                "(the runs of a study share a group: --wandb-group or WANDB_RUN_GROUP)"
            )
        resolved = mode or settings.get("mode") or "online"
        resolved = _MODE_ALIASES.get(resolved, resolved)
        if resolved == "online" and not has_credentials(wandb):
            raise PrunekitError(
                "W&B online mode needs a login and none was found (WANDB_API_KEY, ~/.netrc): "
                "run `wandb login`, or log offline (WANDB_MODE=offline or --wandb-mode offline)"
            )
        self._wandb = wandb
        self.mode = resolved
        self.project = project or settings.get("project") or DEFAULT_PROJECT
        self.entity = entity
        self.dir = Path(dir) if dir is not None else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.bench_id = bench_id
        self.group = group or settings.get("run_group") or suite or bench_id
        self.job_type = settings.get("run_job_type") or None
        self.tags = tuple(settings.get("run_tags") or ())
        self.name_prefix = settings.get("run_name") or ""
        self.log_reused = log_reused
        self.log_weights = log_weights
        self.errors: list[str] = []
        self._open: dict[str, Any] = {}  # cell key -> its open run
        self._logged: set[str] = set()
        self._artifacts: dict[str, list[tuple[str, str, Path, dict[str, Any]]]] = {}
        self._scratch: Path | None = None  # masks and figures waiting to be logged

    def _folder(self, name: str) -> Path:
        """A folder under this sink's scratch space (removed by :meth:`finish`, or when the
        sink is collected)."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="prunekit-wandb-"))
            weakref.finalize(self, shutil.rmtree, self._scratch, ignore_errors=True)
        folder = self._scratch / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # --------------------------------------------------------------------------- runs
    def _init(self, *, job_type: str, name: str, config: dict[str, Any], tags: Sequence[str] = ()) -> Any:
        return self._wandb.init(
            project=self.project,
            entity=self.entity,
            mode=cast(Any, self.mode),
            group=self.group,
            job_type=self.job_type or job_type,
            name=f"{self.name_prefix}-{name}" if self.name_prefix else name,
            tags=list(dict.fromkeys([*tags, *self.tags])),
            config=config,
            dir=str(self.dir) if self.dir is not None else None,
            reinit=_reinit_value(self._wandb),
        )

    def _start(self, row: ResultRow, *, reused: bool = False) -> Any:
        run = self._init(
            job_type=row.check,
            name=run_name(row),
            config=cell_config(row, self.bench_id, reused=reused),
            tags=[t for t in (row.suite, row.model, row.dataset, row.method, "reused" if reused else "") if t],
        )
        define = getattr(run, "define_metric", None)
        if define is not None:  # per-epoch records plot against the epoch
            define("epoch")
            define("*", step_metric="epoch")
        return run

    def events(self, row_for: Callable[[Any], ResultRow]) -> CellEvents:
        """The callbacks a streaming executor calls; ``row_for(spec)`` gives a cell's row as it
        starts (status running: its spec, identity and environment)."""
        return CellEvents(self, row_for)

    def start_cell(self, row: ResultRow) -> None:
        """Open the cell's run (its config complete) as the cell starts."""
        previous = self._open.pop(row.key, None)
        if previous is not None:
            previous.finish(exit_code=1)
        self._open[row.key] = self._start(row)

    def log_epoch(self, key: str, record: Mapping[str, Any]) -> None:
        """Log one epoch's record of a running cell."""
        run = self._open.get(key)
        if run is not None:
            run.log(dict(record))

    def keep_trained(self, key: str, masks: Any, model: Any) -> None:
        """Save a trained cell's masks (and, with ``log_weights``, its weights) for its artifacts."""
        folder = self._folder(key[:32])
        kept: list[tuple[str, str, Path, dict[str, Any]]] = [
            ("masks", "masks.safetensors", masks.save(folder / "masks.safetensors", {"key": key}), {})
        ]
        if self.log_weights:
            from safetensors.torch import save_model

            path = folder / "weights.safetensors"
            save_model(model, str(path), metadata={"key": key})
            kept.append(("model", "weights.safetensors", path, {}))
        self._artifacts[key] = kept

    def log_cell(self, row: ResultRow, *, reused: bool = False) -> bool:
        """End the cell's run (opening it now, its history replayed, when it was not streamed):
        the final metrics in the summary, the masks (and weights) as artifacts, exit code 1 for
        a failed or diverged cell. Returns False (and logs nothing) for cells that did not run."""
        if row.status not in LOGGED_STATUSES:
            run = self._open.pop(row.key, None)
            if run is not None:
                run.finish(exit_code=1)
            return False
        run = self._open.pop(row.key, None)
        if run is None:
            run = self._start(row, reused=reused)
            for record in row.history:
                run.log(dict(record))
        for field in SUMMARY_FIELDS:
            value = getattr(row, field)
            if value is not None:
                run.summary[field] = value
        if row.layer_density:
            run.summary["layer_density"] = dict(row.layer_density)
        if row.warnings:
            run.summary["warnings"] = list(row.warnings)
        from prunekit.bench.instrument_report import wandb_summary

        for name, value in wandb_summary(row).items():  # the instruments' numbers
            run.summary[name] = value
        for kind, file_name, path, _ in self._artifacts.pop(row.key, []):
            artifact = self._wandb.Artifact(
                f"{kind if kind == 'masks' else 'weights'}-{row.key[:16]}",
                type=kind,
                description=f"{'masks' if kind == 'masks' else 'trained weights'} of {run_name(row)}",
                metadata={
                    "key": row.key,
                    "mask_hash": row.mask_hash,
                    "method": row.method,
                    "check": row.check,
                    "sparsity": row.sparsity,
                    "achieved_sparsity": row.achieved_sparsity,
                    "seed": row.seed,
                },
            )
            artifact.add_file(str(path), name=file_name)
            run.log_artifact(artifact)
        run.finish(exit_code=0 if row.status == "done" else 1)
        self._logged.add(row.key)
        return True

    # -------------------------------------------------------------------------- report
    def finish(self, data: ReportData, out_dir: Path) -> None:
        """Log the reused cells (with ``log_reused``), then one report run: the tables of the
        report ``data`` (:func:`~prunekit.bench.report.build_report`) as W&B Tables, its figures
        as Images and its folder (``out_dir``, as listed by its manifest) as an artifact; figures
        are drawn afresh when the folder has none."""
        from prunekit.bench import report
        from prunekit.bench.report import tables as report_tables

        for key, run in list(self._open.items()):  # cells that never reported back
            run.finish(exit_code=1)
            del self._open[key]
        if self.log_reused:
            for row in data.rows:
                if row.key not in self._logged and row.status in LOGGED_STATUSES:
                    self.log_cell(row, reused=True)
        out_dir = Path(out_dir)
        listed = [out_dir / name for name in report.read_manifest(out_dir)] if out_dir.is_dir() else []
        listed = [p for p in listed if p.is_file()]
        images = {p.stem: p for p in listed if p.suffix == ".png"}
        if not images:
            folder = self._folder("figures")
            for fig in report.render_figures(data):
                path = folder / fig.file_name("png")
                path.write_bytes(fig.files["png"])
                images[fig.name] = path
        wandb = self._wandb

        def table(t: Any) -> Any:
            return wandb.Table(columns=list(t.columns), data=[list(r) for r in t.rows])

        payload: dict[str, Any] = {
            "leaderboard": wandb.Table(columns=list(LEADERBOARD_COLUMNS), data=leaderboard_data(data)),
            "verdicts": wandb.Table(columns=list(VERDICT_COLUMNS), data=verdict_data(data)),
            "effects": wandb.Table(columns=list(EFFECT_COLUMNS), data=effect_data(data)),
            "labels": table(report_tables.glossary_table(data)),
        }
        for t in report_tables.protocol_tables(data):
            payload["protocol" + (f"_{t.title.split()[-1]}" if t.title != "Protocol" else "")] = table(t)
        software = report_tables.software_table(data)
        if software is not None:
            payload["software"] = table(software)
        from prunekit.bench.instrument_report import wandb_tables

        for key, t in wandb_tables(data).items():  # the instruments' tables
            payload[key] = table(t)
        for stem, path in images.items():
            payload[f"figures/{stem}"] = wandb.Image(str(path))
        run = self._init(
            job_type="report",
            name=f"report-{self.group}",
            config={
                "bench_id": self.bench_id,
                "group": self.group,
                "tolerance_points": data.tolerance,
                "confidence": data.confidence,
                "sequential": None if data.design is None else _mapping(_asdict(data.design)),
                "protocol": [g.as_dict() for g in data.protocols],
            },
        )
        run.log(payload)
        run.summary["status"] = report.status_line(data.rows)
        for status, count in data.status_counts.items():
            run.summary[f"cells_{status}"] = count
        if listed and hasattr(wandb, "Artifact"):
            artifact = wandb.Artifact(
                f"report-{re.sub(r'[^A-Za-z0-9_.-]', '-', self.group)}",
                type="report",
                description="the benchmark report: Markdown, HTML, CSV, JSON and figures (PNG, SVG, PDF)",
                metadata={"bench_id": self.bench_id, "rows": len(data.rows), "status": report.status_line(data.rows)},
            )
            for path in listed:
                artifact.add_file(str(path), name=path.name)
            run.log_artifact(artifact)
        run.finish()
        if self.errors:
            print(
                f"warning: W&B could not log {len(self.errors)} live record(s); first: {self.errors[0]}",
                file=sys.stderr,
            )
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _asdict(value: Any) -> Any:
    import attrs

    return attrs.asdict(value) if attrs.has(type(value)) else value


LEADERBOARD_COLUMNS = (
    "board",
    "protocol",
    "model",
    "dataset",
    "sparsity",
    "method",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "rank",
    "rank_low",
    "rank_high",
    "vs_random_ticket",
    "vs_random_ticket_low",
    "vs_random_ticket_high",
    "reference",
)
VERDICT_COLUMNS = ("protocol", "model", "dataset", "method", "check", "verdict", "label", "counts")
EFFECT_COLUMNS = (
    "protocol",
    "model",
    "dataset",
    "method",
    "check",
    "sparsity",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "verdict",
    "seeds_needed",
    "note",
)


def leaderboard_data(data: Any) -> list[list[Any]]:
    """The leaderboard rows (accuracy in percent, sparsity as asked, a fraction); intervals
    never leave [0, 100]."""
    from prunekit.bench.report.data import ACCURACY_BOUNDS, DELTA_BOUNDS, clip

    out = []
    for r in data.ranks:
        d = r.vs_random_ticket
        lo, hi, _ = clip(r.ci_low, r.ci_high, ACCURACY_BOUNDS)
        dlo, dhi, _ = clip(None if d is None else d.ci_low, None if d is None else d.ci_high, DELTA_BOUNDS)
        out.append(
            [
                "overall" if r.sparsity is None else "sparsity",
                r.protocol,
                r.model,
                r.dataset,
                r.sparsity,
                r.method,
                r.n,
                r.mean,
                lo,
                hi,
                r.rank,
                r.rank_low,
                r.rank_high,
                None if d is None else d.mean,
                dlo,
                dhi,
                r.reference,
            ]
        )
    return out


def verdict_data(data: Any) -> list[list[Any]]:
    from prunekit.bench.report.tables import verdict_label

    return [
        [
            v.protocol,
            v.model,
            v.dataset,
            v.method,
            v.check,
            v.verdict,
            verdict_label(v),
            ", ".join(f"{n} {k}" for k, n in v.counts.items()),
        ]
        for v in data.verdicts
    ]


def effect_data(data: Any) -> list[list[Any]]:
    from prunekit.bench.report.data import clip, effect_bounds

    out = []
    for e in data.effects:
        lo, hi, _ = clip(e.ci_low, e.ci_high, effect_bounds(e))
        out.append(
            [e.protocol, e.model, e.dataset, e.method, e.check, e.sparsity, e.n, e.mean, lo, hi, e.verdict, e.seeds_needed, e.note]
        )
    return out
