"""Weights & Biases sink for ``prunekit bench``: one W&B run per cell and one report run.

The SQLite results store stays the canonical record; W&B is a view of it. wandb is an
optional dependency (``pip install 'prunekit[wandb]'``) imported only when a sink is built.

The constructor fails fast — before the driver trains anything — when wandb is missing or
when online mode has no credentials. Credentials are looked up without network and without
prompting: ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, the netrc entry for the W&B host
(``$NETRC`` or ``~/.netrc``; host from ``WANDB_BASE_URL``, default ``https://api.wandb.ai``),
then wandb's own non-interactive lookup where the installed version has one (which also reads
an ``api_key`` from wandb's settings files).
"""

from __future__ import annotations

import netrc
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prunekit.bench.records import ResultRow
from prunekit.errors import PrunekitError

MODES = ("online", "offline")
DEFAULT_BASE_URL = "https://api.wandb.ai"
LOGGED_STATUSES = ("done", "failed")  # "not_applicable" and "running" cells are not runs
SUMMARY_FIELDS = (
    "final_accuracy",
    "best_accuracy",
    "final_loss",
    "achieved_sparsity",
    "effective_sparsity",
    "wall_time",
    "status",
    "error",
)


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
        from wandb.sdk.lib import wbauth  # type: ignore[import-not-found]

        auth = wbauth.authenticate_session(
            host=base_url, source="prunekit bench", prompt=False, verify=False, update_session=False
        )
    except (ImportError, AttributeError, TypeError):  # an older or different wandb
        return False
    except Exception:  # malformed credentials count as none; wandb.init would refuse them too
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


def run_name(row: ResultRow) -> str:
    return f"{row.model}-{row.dataset}-{row.method}-{row.check}-s{row.sparsity:g}-seed{row.seed}"


def cell_config(row: ResultRow, bench_id: str = "") -> dict[str, Any]:
    """The W&B config of a cell's run: its spec, protocol fingerprint and environment."""
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
        "protocol": row.protocol,
        "environment": dict(row.environment),
    }


class WandbSink:
    """Logs benchmark cells to W&B: ``log_cell`` once per finished cell, ``finish`` once.

    ``dir`` is where wandb keeps its local files (``<dir>/wandb/...``); by default wandb's own
    choice (``./wandb``). ``WANDB_SILENT`` is set to ``true`` unless already set.
    """

    def __init__(
        self,
        *,
        project: str,
        entity: str | None = None,
        mode: str = "online",
        bench_id: str,
        dir: str | Path | None = None,  # noqa: A002 - wandb's own name for it
    ) -> None:
        if mode not in MODES:
            raise PrunekitError(f"unknown W&B mode {mode!r}; use one of {', '.join(MODES)}")
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb
        except ImportError:
            raise PrunekitError(
                "Weights & Biases logging needs the wandb package: pip install 'prunekit[wandb]'"
            ) from None
        if mode == "online" and not has_credentials(wandb):
            raise PrunekitError(
                "W&B online mode needs a login and none was found (WANDB_API_KEY, ~/.netrc): "
                "run `wandb login`, or log offline with --wandb-mode offline"
            )
        self._wandb = wandb
        self.project = project
        self.entity = entity
        self.mode = mode
        self.bench_id = bench_id
        self.dir = Path(dir) if dir is not None else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _init(self, **kwargs: Any) -> Any:
        extra = {"dir": str(self.dir)} if self.dir is not None else {}
        return self._wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            group=self.bench_id,
            reinit=_reinit_value(self._wandb),
            **extra,
            **kwargs,
        )

    def log_cell(self, row: ResultRow) -> bool:
        """One run for one cell (done or failed): config = spec + protocol + environment, the
        per-epoch history with ``step=epoch``, the final metrics in the run summary. Returns
        False (and logs nothing) for cells that did not run (not applicable, still running)."""
        if row.status not in LOGGED_STATUSES:
            return False
        with self._init(
            job_type=row.check,
            name=run_name(row),
            config=cell_config(row, self.bench_id),
            tags=[t for t in (row.suite, row.model, row.dataset, row.method) if t],
        ) as run:
            last = -1
            for index, record in enumerate(row.history):
                step = int(record.get("epoch", index))
                step = step if step > last else last + 1  # W&B steps must increase
                last = step
                run.log(dict(record), step=step)
            for field in SUMMARY_FIELDS:
                value = getattr(row, field)
                if value is not None:
                    run.summary[field] = value
            if row.layer_density:
                run.summary["layer_density"] = dict(row.layer_density)
        return True

    def finish(
        self,
        rows: Sequence[ResultRow],
        out_dir: Path,
        *,
        tolerance: float | None = None,
        confidence: float | None = None,
    ) -> None:
        """One report run (job_type "report"): leaderboard, verdicts and effects as W&B
        Tables, the report's plots from ``out_dir`` as W&B Images (rendered there first if
        they are missing)."""
        from prunekit.bench import report
        from prunekit.bench.stats import DEFAULT_CONFIDENCE, DEFAULT_TOLERANCE

        settings = {
            "tolerance": DEFAULT_TOLERANCE if tolerance is None else tolerance,
            "confidence": DEFAULT_CONFIDENCE if confidence is None else confidence,
        }
        data = report.build_report(rows, **settings)
        out_dir = Path(out_dir)
        plots = [out_dir / report.ACCURACY_PLOT, out_dir / report.EFFECTS_PLOT]
        if not all(p.is_file() for p in plots):
            report.write_reports(list(rows), out_dir, formats=(), plots=True, **settings)
        wandb = self._wandb
        payload: dict[str, Any] = {
            "leaderboard": wandb.Table(columns=list(LEADERBOARD_COLUMNS), data=leaderboard_data(data)),
            "verdicts": wandb.Table(columns=list(VERDICT_COLUMNS), data=verdict_data(data)),
            "effects": wandb.Table(columns=list(EFFECT_COLUMNS), data=effect_data(data)),
        }
        for path in plots:
            if path.is_file():
                payload[f"plots/{path.stem}"] = wandb.Image(str(path))
        with self._init(
            job_type="report",
            name=f"report-{self.bench_id}",
            config={"bench_id": self.bench_id, **settings},
        ) as run:
            run.log(payload)
            run.summary["status"] = report.status_line(data.rows)
            for status, count in data.status_counts.items():
                run.summary[f"cells_{status}"] = count


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
VERDICT_COLUMNS = ("protocol", "model", "dataset", "method", "check", "verdict", "counts")
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
    out = []
    for r in data.ranks:
        d = r.vs_random_ticket
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
                r.ci_low,
                r.ci_high,
                r.rank,
                r.rank_low,
                r.rank_high,
                None if d is None else d.mean,
                None if d is None else d.ci_low,
                None if d is None else d.ci_high,
                r.reference,
            ]
        )
    return out


def verdict_data(data: Any) -> list[list[Any]]:
    return [
        [
            v.protocol,
            v.model,
            v.dataset,
            v.method,
            v.check,
            v.verdict,
            ", ".join(f"{n} {k}" for k, n in v.counts.items()),
        ]
        for v in data.verdicts
    ]


def effect_data(data: Any) -> list[list[Any]]:
    return [
        [
            e.protocol,
            e.model,
            e.dataset,
            e.method,
            e.check,
            e.sparsity,
            e.n,
            e.mean,
            e.ci_low,
            e.ci_high,
            e.verdict,
            e.seeds_needed,
            e.note,
        ]
        for e in data.effects
    ]
