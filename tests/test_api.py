"""The Python API (`import prunekit as pk`): docs/api.md's example as written, and pk.prune on
a user's own module and data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import prunekit as pk
from prunekit.layers import prunable_layers

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: the example's small convolutions run several times faster so on a
    shared CPU (the results do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_docs_example_runs_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    """Every ```python block of docs/api.md, joined, runs as written in an empty folder: SNIP on
    a timm ResNet-18 from a DataLoader of digits, the masks held through the user's own loop,
    a check, a composed method, save/load, and a benchmark on prunekit's digits whose table
    has the rows of its grid."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)  # the documented example
    out = capsys.readouterr().out
    assert "layers pruned to sparsity 0.900" in out
    masks = namespace["masks"]
    assert isinstance(masks, pk.Masks) and abs(masks.sparsity() - 0.9) < 1e-3
    results = namespace["results"]
    assert isinstance(results, pk.Results)
    assert sorted((r["method"], r["check"], r["status"]) for r in results) == [
        ("random_uniform", "none", "done"),
        ("random_uniform", "random_labels", "not_applicable"),
        ("snip", "none", "done"),
        ("snip", "random_labels", "done"),
    ]
    assert (tmp_path / "notebook-results.db").is_file() and (tmp_path / "resnet18-snip.safetensors").is_file()


class Small(nn.Module):
    """A user's own module: conv, BatchNorm, conv, pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn((n, 1, 8, 8), generator=g), torch.arange(n) % 5


def _model() -> nn.Module:
    torch.manual_seed(0)
    return Small()


def test_prune_own_module_from_tensors_and_loader() -> None:
    """pk.prune on a user's module: the asked sparsity over its prunable weights, pruned weights
    zero in the model, the same masks for the same seed, and a DataLoader accepted in place of
    tensors (read until every class has SNIP's samples)."""
    x, y = _data()
    model = _model()
    masks = pk.prune(model, (x, y), method="snip", sparsity=0.75, seed=1)
    total = sum(layer.numel for layer in prunable_layers(_model()))
    assert masks.total() == total and masks.kept() == round(0.25 * total)
    params = dict(model.named_parameters())
    assert all(not params[n][~m].any() for n, m in masks.items())
    assert pk.prune(_model(), (x, y), method="snip", sparsity=0.75, seed=1).equals(masks)

    batches: list[int] = []

    class Counting(DataLoader):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            for batch in super().__iter__():
                batches.append(len(batch[1]))
                yield batch

    loader = Counting(TensorDataset(x, y), batch_size=10)
    from_loader = pk.prune(_model(), loader, method="snip", sparsity=0.75, seed=1)
    assert from_loader.kept() == masks.kept()
    assert sum(batches) < len(y)  # SNIP's 10 samples per class: the loader was not read to the end


def test_prune_data_free_check_and_composition() -> None:
    """A data-free method needs only the input shape; a check changes the masks of a method
    that uses data; a composed method keeps the schedule's layer budgets (uniform: every layer
    at the asked density)."""
    x, y = _data()
    free = pk.prune(_model(), None, method="magnitude_at_init", sparsity=0.5, input_shape=(1, 8, 8))
    assert abs(free.sparsity() - 0.5) < 0.01
    clean = pk.prune(_model(), (x, y), method="snip", sparsity=0.75, seed=0)
    checked = pk.prune(_model(), (x, y), method="snip", sparsity=0.75, seed=0, check="random_labels")
    assert checked.kept() == clean.kept() and not checked.equals(clean)
    uniform = pk.prune(_model(), (x, y), scorer="magnitude", schedule="uniform", sparsity=0.5)
    assert all(abs(d - 0.5) < 0.1 for d in uniform.layer_density().values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "snip", "scorer": "synflow"}, "--method snip is a named recipe and --scorer synflow"),
        ({"method": "snip", "data": (torch.zeros(4, 64), torch.zeros(4, dtype=torch.long))}, "(N, C, H, W)"),
        ({"method": "snip", "data": (torch.zeros(4, 1, 8, 8), torch.full((4,), 7))}, "class indices in 0..4"),
        ({"method": "lottery_ticket"}, "pass train=pk.TrainConfig"),
        ({"method": "magnitude_at_init", "data": None}, "input_shape"),
        ({"method": "snipp"}, "did you mean snip"),
    ],
)
def test_prune_mistakes_are_one_line(kwargs: dict, message: str) -> None:
    """Each mistake is a PrunekitError whose one line says what to do."""
    kwargs = {"data": _data(), **kwargs}
    with pytest.raises(pk.PrunekitError) as err:
        pk.prune(_model(), sparsity=0.5, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_results_table() -> None:
    """Results: rows as dicts, columns by name, filtering by value, plain text and HTML."""
    rows = [
        {"method": "snip", "check": "none", "seed": 0, "final_accuracy": 0.9, "status": "done"},
        {"method": "snip", "check": "random_labels", "seed": 0, "final_accuracy": 0.7, "status": "done"},
        {"method": "random_uniform", "check": "none", "seed": 0, "final_accuracy": 0.5, "status": "done"},
    ]
    table = pk.Results(rows, summary="3 cells")
    assert len(table) == 3 and table[1]["check"] == "random_labels" and table[0]["model"] is None
    assert table["final_accuracy"] == [0.9, 0.7, 0.5]
    assert table.where(method="snip", check="none").rows() == [{**dict.fromkeys(table.columns), **rows[0]}]
    assert len(table[:2]) == 2
    text = repr(table).splitlines()
    assert text[0].split() == ["method", "check", "seed", "status", "final_accuracy"] and text[-1] == "3 cells"
    assert "<td>random_labels</td>" in table._repr_html_()
    with pytest.raises(KeyError, match="no column 'acc'"):
        table.where(acc=1)


def test_facade_names() -> None:
    """The facade lists what a notebook uses and names what is installed."""
    assert {"prune", "benchmark", "Masks", "Results", "names", "TrainConfig"} <= set(pk.__all__)
    assert "snip" in pk.names("methods") and "random_labels" in pk.names("check")
    with pytest.raises(pk.PrunekitError, match="unknown kind"):
        pk.names("colours")


def test_facade_holds_the_plugin_contract() -> None:
    """``import prunekit`` gives a plugin everything it implements or receives: the hook
    marker, one interface per ``register_*`` hook, the context types and the scorer helpers;
    the lazy table, ``__all__`` and the names type checkers see agree."""
    import ast
    import inspect

    import prunekit.bench.executors
    import prunekit.bench.suite
    import prunekit.hookspecs
    import prunekit.instruments
    import prunekit.interfaces
    import prunekit.scoring

    kinds = {
        "register_scorers": pk.Scorer,
        "register_ratio_schedules": pk.RatioSchedule,
        "register_sanity_checks": pk.SanityCheck,
        "register_trainers": pk.Trainer,
        "register_methods": pk.Method,
        "register_datasets": pk.Dataset,
        "register_suites": pk.Suite,
        "register_executors": pk.Executor,
        "register_instruments": pk.Instrument,
    }
    hooks = {n for n in vars(prunekit.hookspecs) if n.startswith("register_")}
    assert hooks - {"register_models", "register_commands"} == set(kinds)
    assert pk.Scorer is prunekit.interfaces.Scorer and pk.Executor is prunekit.bench.executors.Executor
    assert pk.Instrument is prunekit.instruments.Instrument and pk.Suite is prunekit.bench.suite.Suite
    assert pk.hookimpl is prunekit.hookspecs.hookimpl and pk.scoring is prunekit.scoring
    for name in ("ScoringContext", "DataRequest", "TicketContext", "PrunableLayer", "Masks", "TrainConfig"):
        assert getattr(pk, name) is not None
    tree = ast.parse(inspect.getsource(pk))
    checked = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for stmt in node.body
        if isinstance(stmt, ast.ImportFrom)
        for alias in stmt.names
    }
    assert set(pk.__all__) == checked | {"__version__"} == set(pk._EXPORTS) | pk._SUBMODULES | {"__version__"}
    for name in pk.__all__:
        assert getattr(pk, name) is not None, name


def test_plugin_guide_one_page_scorer_passes_the_kit() -> None:
    """The whole scorer plugin on the first page of docs/plugins.md, built only from the facade
    and prunekit.scoring, runs as written and passes the conformance kit."""
    from prunekit.testing import check_scorer

    text = (DOC.parent / "plugins.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "class Sensitivity" in b]
    namespace: dict[str, object] = {"__name__": "prunekit_doc_plugin"}
    exec(compile(block, "docs/plugins.md", "exec"), namespace)  # the documented plugin
    scorer = namespace["Sensitivity"]
    assert isinstance(scorer, type)
    check_scorer(scorer())
