"""The Python API: prunekit on your own model, data and training loop (docs/api.md).

Four functions and a table, re-exported by :mod:`prunekit` (``import prunekit as pk``):

* :func:`prune` — masks for any ``nn.Module`` (a timm model or your own) at a sparsity, with a
  named method or a scorer and a schedule, optionally under a sanity check, from a
  ``DataLoader``, a pair of tensors or nothing (data-free methods);
* :class:`~prunekit.masks.Masks` (``pk.Masks``) — ``masks.apply(model)``,
  ``masks.enforcer(model, optimizer)`` to call after every ``optimizer.step()`` of your loop,
  ``masks.save(path)`` / ``Masks.load(path)``;
* :func:`benchmark` — a benchmark suite (a name, a TOML file or a dict), whose cells come back
  as a :class:`Results` table;
* :func:`names` — the installed methods, checks, suites, ... by kind.

Inputs are used as given: batches of images ``(N, C, H, W)``, already normalised as your model
expects, with integer class labels. Nothing here prints, except the benchmark's progress.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import attrs
import torch
from torch import nn

from prunekit.data import ArrayData, DataBundle
from prunekit.defaults import DEFAULT_TRAINER
from prunekit.errors import PrunekitError
from prunekit.interfaces import TrainConfig
from prunekit.masks import Masks
from prunekit.scoring import preserved

__all__ = ["Results", "benchmark", "names", "prune"]


# ------------------------------------------------------------------------------ your data
@attrs.frozen(kw_only=True, eq=False)
class TensorData(DataBundle):
    """A :class:`~prunekit.data.DataBundle` of the user's own tensors: inputs are used as they
    are (already normalised), never scaled from 0..255 as prunekit's datasets are."""

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.is_floating_point() else x.float()


def _pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of one batch: a pair, or a mapping with them first."""
    if isinstance(batch, Mapping):
        batch = tuple(batch.values())
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise PrunekitError(
            f"each batch must be (inputs, labels), got {type(batch).__name__}; wrap your data so "
            "that iterating it gives (images, labels) pairs"
        )
    x, y = batch[0], batch[1]
    if not (torch.is_tensor(x) and torch.is_tensor(y)):
        raise PrunekitError(f"each batch must hold tensors, got {type(x).__name__} and {type(y).__name__}")
    return x, y


def _collect(
    data: Iterable[Any], num_classes: int, per_class: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batches of ``data`` until every class has ``per_class`` samples (all when None)."""
    xs, ys = [], []
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for batch in data:
        x, y = _pair(batch)
        xs.append(x.detach().cpu())
        ys.append(y.detach().cpu().long())
        counts += torch.bincount(ys[-1].clamp(0, num_classes - 1), minlength=num_classes)[:num_classes]
        if per_class is not None and bool((counts >= per_class).all()):
            break
    if not xs:
        raise PrunekitError("the data gave no batch; pass a DataLoader (or tensors) with samples")
    return torch.cat(xs), torch.cat(ys)


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    """The number of classes: the width of the model's output on one sample (modes restored)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with preserved(model):
        try:
            model.eval()
            with torch.no_grad():
                out = model(x[:1].to(device))
        except Exception as err:  # noqa: BLE001 - any failure here is a data/model mismatch
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PrunekitError(
                f"the model cannot run on inputs of shape {tuple(x.shape[1:])}: {first}; pass data "
                "the model takes (num_classes= and input_shape= can be given when there is none)"
            ) from None
    if not torch.is_tensor(out) or out.ndim != 2:
        raise PrunekitError(
            f"the model's output should be (batch, classes) logits, got {getattr(out, 'shape', type(out))}; "
            "pass num_classes= for models that return something else"
        )
    return int(out.shape[1])


def as_data(
    data: Any,
    model: nn.Module,
    *,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    per_class: int | None = None,
) -> DataBundle:
    """The user's data as a bundle prunekit prunes from.

    ``data``: a :class:`~prunekit.data.DataBundle` (used as it is); a pair ``(x, y)`` of
    tensors; any iterable of ``(x, y)`` batches such as a ``DataLoader`` (read until every
    class has ``per_class`` samples, or to the end when ``per_class`` is None); or None for
    data-free methods, with ``input_shape`` = (C, H, W).
    """
    if isinstance(data, DataBundle):
        return data
    if data is None:
        if input_shape is None:
            raise PrunekitError("without data, pass input_shape=(channels, height, width) of the model's input")
        x = torch.zeros((0, *input_shape))
        y = torch.zeros(0, dtype=torch.int64)
        classes = num_classes or 1
    else:
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
            x, y = data[0].detach(), data[1].detach().long()
            _check_shapes(x, y)
            classes = num_classes or _num_classes(model, x)
        else:
            iterator = iter(data)
            try:
                first = next(iterator)
            except StopIteration:
                raise PrunekitError("the data gave no batch; pass a DataLoader (or tensors) with samples") from None
            fx, fy = _pair(first)
            _check_shapes(fx, fy)
            classes = num_classes or _num_classes(model, fx)
            x, y = _collect(_chain(first, iterator), classes, per_class)
            _check_shapes(x, y)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise PrunekitError(
                f"labels must be class indices in 0..{classes - 1} (the model has {classes} outputs); "
                f"got {int(y.min())}..{int(y.max())}"
            )
    channels = int(x.shape[1])
    split = ArrayData(x=x, y=y)
    return TensorData(
        name="user data",
        train=split,
        test=ArrayData(x=x[:0], y=y[:0]),
        num_classes=classes,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
    )


def _check_shapes(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4:
        raise PrunekitError(f"prunekit prunes from image batches (N, C, H, W); got inputs of shape {tuple(x.shape)}")
    if y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise PrunekitError(f"labels must be one class index per input: {x.shape[0]} inputs, labels of shape {tuple(y.shape)}")


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _reinitialiser(model: nn.Module) -> Callable[[int], nn.Module]:
    """A fresh initialisation of ``model``'s architecture from a seed: a copy whose every
    module with ``reset_parameters`` resets them (PyTorch's default initialisation)."""

    def init(seed: int) -> nn.Module:
        fresh = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in fresh.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
        return fresh

    return init


# ------------------------------------------------------------------------------- pruning
def prune(
    model: nn.Module,
    data: Any = None,
    *,
    sparsity: float,
    method: str | None = None,
    scorer: str | None = None,
    schedule: str | None = None,
    check: str | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    train: TrainConfig | None = None,
    trainer: str = DEFAULT_TRAINER,
    init_model: Callable[[int], nn.Module] | None = None,
    scorer_options: Mapping[str, Any] | None = None,
    schedule_options: Mapping[str, Any] | None = None,
    check_options: Mapping[str, Any] | None = None,
    allow_collapse: bool = False,
) -> Masks:
    """Prune ``model`` in place to ``sparsity`` and return its masks.

    * ``model``: any ``nn.Module`` taking ``(N, C, H, W)`` inputs and returning class logits —
      a timm model or your own. Its prunable parameters follow prunekit's policy (weights of
      convolutions and linear layers). After the call its pruned weights are exactly zero; for
      methods that train the dense network first (lottery tickets) its weights are the ticket's.
    * ``data``: a ``DataLoader`` (or any iterable of ``(x, y)`` batches), a pair of tensors, or
      None for data-free methods (then give ``input_shape``). Inputs are used as given (already
      normalised). A loader is read until every class has the samples the scorer asks for;
      methods that pre-train read all of it, and need ``train`` (a :class:`TrainConfig`).
    * ``method``: a named method (``pk.names("methods")``), or instead ``scorer`` with
      ``schedule`` (default ``global``) to compose one; giving both is an error.
    * ``check``: a sanity check (``pk.names("checks")``) applied while pruning, e.g.
      ``random_labels`` or ``layerwise_rearrange``. Checks that re-initialise the model use
      ``init_model(seed)`` (default: a copy with every module's ``reset_parameters()``).
    * ``seed`` fixes every random draw; ``device`` defaults to the model's.
    """
    from prunekit import pipeline
    from prunekit.dense import DenseCache
    from prunekit.validate import check_composition

    check_composition(method, scorer=scorer, schedule=schedule)
    if not isinstance(model, nn.Module):
        raise PrunekitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    pipeline.check_sparsity(sparsity)
    recipe = pipeline.resolve_method(
        method, scorer=scorer, schedule=schedule, scorer_options=scorer_options, schedule_options=schedule_options
    )
    sanity = pipeline.resolve_check(check, recipe, check_options)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    per_class = None if recipe.pretrain else _samples_per_class(recipe, model, data, num_classes)
    bundle = as_data(data, model, num_classes=num_classes, input_shape=input_shape, per_class=per_class)
    training = None
    if recipe.pretrain:
        if train is None:
            raise PrunekitError(
                f"method {recipe.name!r} trains the dense network first: pass train=pk.TrainConfig(epochs=..., "
                "lr=..., batch_size=...)"
            )
        training = pipeline.Training(
            trainer=pipeline.instantiate("trainer", trainer),
            config=train,
            model_name=type(model).__name__,
            dataset_key="user data",
            cache=DenseCache(),
            device=torch.device(device),
        )
    outcome = pipeline.prune(
        model,
        bundle,
        recipe,
        sparsity,
        seed=seed,
        check=sanity,
        device=device,
        allow_collapse=allow_collapse,
        init_model=init_model or _reinitialiser(model),
        training=training,
    )
    return outcome.masks


def _samples_per_class(recipe: Any, model: nn.Module, data: Any, num_classes: int | None) -> int | None:
    """How many samples of each class the method's scorer asks for (None: no data needed)."""
    if recipe.scorer is None or data is None or isinstance(data, DataBundle):
        return None
    from prunekit import pipeline

    scorer = pipeline.instantiate("scorer", recipe.scorer, dict(recipe.scorer_options))
    if not scorer.needs_data:
        return 1
    probe = TensorData(
        name="probe", train=ArrayData(x=torch.zeros((0, 1, 1, 1)), y=torch.zeros(0, dtype=torch.int64)),
        test=ArrayData(x=torch.zeros((0, 1, 1, 1)), y=torch.zeros(0, dtype=torch.int64)),
        num_classes=num_classes or 10, mean=(0.0,), std=(1.0,),
    )  # fmt: skip
    request = scorer.data_request(model, probe)
    return None if request is None else int(request.samples_per_class)


# ----------------------------------------------------------------------------- benchmark
RESULT_COLUMNS = (
    "model", "dataset", "method", "check", "sparsity", "seed", "status",
    "final_accuracy", "best_accuracy", "achieved_sparsity", "wall_time", "error",
)  # fmt: skip


class Results(Sequence[dict[str, Any]]):
    """Cells of a benchmark as a table: a sequence of dicts (one per cell) with the same keys.

    ``results[i]`` is a row, ``results["method"]`` a column, ``results.where(check="none")``
    the rows whose values equal those given; ``rows()`` gives plain dicts (for
    ``pandas.DataFrame(results.rows())`` if you use pandas). It prints as a text table and
    shows as an HTML table in a notebook. ``summary`` says what the run did.
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = RESULT_COLUMNS, summary: str = "") -> None:
        self.columns = tuple(columns)
        self._rows = [{c: row.get(c) for c in self.columns} for row in rows]
        self.summary = summary

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Results: ...
    @overload
    def __getitem__(self, index: str) -> list[Any]: ...

    def __getitem__(self, index: int | slice | str) -> Any:
        if isinstance(index, str):
            if index not in self.columns:
                raise KeyError(f"no column {index!r}; columns: {', '.join(self.columns)}")
            return [row[index] for row in self._rows]
        if isinstance(index, slice):
            return Results(self._rows[index], self.columns, self.summary)
        return dict(self._rows[index])

    def __len__(self) -> int:
        return len(self._rows)

    def where(self, **equals: Any) -> Results:
        """The rows whose columns equal the values given."""
        unknown = [k for k in equals if k not in self.columns]
        if unknown:
            raise KeyError(f"no column {unknown[0]!r}; columns: {', '.join(self.columns)}")
        kept = [row for row in self._rows if all(row[k] == v for k, v in equals.items())]
        return Results(kept, self.columns, self.summary)

    def rows(self) -> list[dict[str, Any]]:
        """Every row as a plain dict."""
        return [dict(row) for row in self._rows]

    def _text(self, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    def __repr__(self) -> str:
        shown = [c for c in self.columns if any(row[c] is not None for row in self._rows)] or list(self.columns)
        cells = [[self._text(row[c]) for c in shown] for row in self._rows]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(shown)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
        return "\n".join(lines + ([self.summary] if self.summary else []))

    def _repr_html_(self) -> str:
        shown = [c for c in self.columns if any(row[c] is not None for row in self._rows)] or list(self.columns)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(self._text(row[c]))}</td>" for c in shown) + "</tr>"
            for row in self._rows
        )
        caption = f"<caption>{html.escape(self.summary)}</caption>" if self.summary else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def benchmark(
    suite: str | Path | Mapping[str, Any] | Any = "quick",
    *,
    db: str | Path = "prunekit-results.db",
    methods: Sequence[str] | None = None,
    checks: Sequence[str] | None = None,
    sparsities: Sequence[float] | None = None,
    seeds: Sequence[int] | None = None,
    everything: bool = False,
    executor: str = "local",
    jobs: int | None = None,
    device: str = "cpu",
    data_root: str | None = None,
    progress: bool = True,
) -> Results:
    """Run a benchmark suite (resumable in ``db``) and return its cells as a :class:`Results`.

    ``suite``: a registered name (``pk.names("suites")``), a TOML file, a dict with a suite
    file's keys (``name``, ``dataset``, ``models``, ``sparsities``, ``seeds``, ``methods``,
    ``checks``, ``protocol`` ...), or a ``Suite``. ``methods``, ``checks``, ``sparsities`` and
    ``seeds`` narrow the grid as ``prunekit bench`` does. Cells already done in ``db`` are
    reused. Progress goes to stderr (a bar in a terminal or notebook).

    ``executor``: ``"local"`` (this process), ``"auto"`` (worker processes on a long CPU grid,
    as ``prunekit bench`` does), ``"processes"`` (``jobs`` workers, default one per core), or a
    plugin's. Worker processes start with ``spawn``, which runs a script's top level again in
    each worker: call it from under ``if __name__ == "__main__":`` to use them.
    """
    from prunekit.bench.grid import Filters
    from prunekit.bench.runner import run_bench
    from prunekit.bench.suite import Suite, resolve_suite, suite_from_mapping

    if isinstance(suite, Suite):
        chosen = suite
    elif isinstance(suite, Mapping):
        chosen = suite_from_mapping(dict(suite), f"dict {suite.get('name', '?')!r}")
    else:
        chosen = resolve_suite(str(suite))
    filters = Filters(
        everything=everything,
        methods=list(methods or ()),
        checks=list(checks or ()),
        sparsities=[float(s) for s in sparsities or ()],
        seeds=[int(s) for s in seeds or ()],
    )
    summary = run_bench(
        chosen, db=db, filters=filters, executor=executor, jobs=jobs, device=device,
        data_root=data_root, progress=progress, argv=["prunekit.benchmark", chosen.name],
    )  # fmt: skip
    return Results((r.as_dict() for r in summary.rows), summary=summary.line())


# ----------------------------------------------------------------------------------- names
def names(kind: str) -> list[str]:
    """The installed names of one kind: ``methods``, ``checks``, ``scorers``, ``schedules``,
    ``trainers``, ``datasets``, ``suites``, ``executors``, ``models`` (singular works too)."""
    from prunekit.plugins import get_plugins

    return get_plugins().registry(kind).names()


def lookup(kind: str, name: str) -> Any:
    """The registered class (or object) ``name`` of ``kind`` (words as :func:`names`); an unknown
    name is one line with the closest names."""
    from prunekit.plugins import get_plugins

    return get_plugins().registry(kind).get(name)
