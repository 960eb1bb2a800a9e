"""The paper suites run the papers' protocols: docs/reproducing.md and the suite files agree,
every option a suite sets is a real option, and the options behave as documented.

The tables in docs/reproducing.md ("choice | authors' code | prunekit default | option") are read
here and compared with the TOML files read by tomllib, in both directions. Golden values of the
behaviour tests come from the definitions (a global top-k computed here with torch.topk, a t
quantile from a printed table), never from the code under test.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from prunekit.bench.grid import expand
from prunekit.bench.published import compare_published, lookup, mean_interval
from prunekit.bench.records import ResultRow
from prunekit.bench.suite import load_suite
from prunekit.cell import resolve_cell
from prunekit.cell_identity import cell_identity
from prunekit.data import ArrayData, DataBundle
from prunekit.errors import PrunekitError
from prunekit.interfaces import Method
from prunekit.layers import prunable_layers
from prunekit.pipeline import instantiate, prune
from prunekit_plugins.schedules import Global

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reproducing.md"
SUITES = ROOT / "benchmarks" / "suites"
HEADER = "| choice | authors' code | prunekit default | option |"
TABLES = ("protocol", "model", "method_options", "check_options", "dataset_options")


# ------------------------------------------------------------------------ reading the doc
def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start : end if end >= 0 else len(text)]


def _setting(entry: str) -> tuple[str, Any]:
    """``path.to.key = <TOML value>`` as (path, value)."""
    path, sep, value = entry.partition(" = ")
    assert sep, f"option {entry!r} is not `path = value`"
    return path.strip(), tomllib.loads(f"v = {value}")["v"]


def doc_tables() -> dict[str, dict[str, Any]]:
    """suite name -> {dotted option path: value} from the per-suite tables."""
    part = _section(DOC.read_text(), "Protocol choices")
    out: dict[str, dict[str, Any]] = {}
    for block in part.split("\n### ")[1:]:
        heading, _, body = block.partition("\n")
        names = re.findall(r"`([a-z0-9_]+)`", heading)
        lines = [line for line in body.splitlines() if line.startswith("|")]
        if not names or not lines:
            continue
        assert lines[0] == HEADER, f"table of {heading!r} has header {lines[0]!r}"
        settings: dict[str, Any] = {}
        for row in lines[2:]:
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert len(cells) == 4, f"row {row!r} of {heading!r} does not have 4 cells"
            for entry in re.findall(r"`([^`]+)`", cells[3]):
                path, value = _setting(entry)
                assert path not in settings, f"{path} twice in the table of {heading!r}"
                settings[path] = value
        for name in names:
            assert name not in out, f"suite {name} has two tables"
            out[name] = settings
    return out


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}


def _at(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(path)
        node = node[key]
    return node


def paper_suites() -> list[str]:
    return sorted(p.stem for p in SUITES.glob("*.toml") if p.stem != "quick")


# ------------------------------------------------------------------ doc and TOML agree
def test_every_paper_suite_has_a_protocol_table() -> None:
    """docs/reproducing.md has one "choice | authors' code | prunekit default | option" table for
    every suite file except quick, and names no suite that does not exist."""
    assert set(doc_tables()) == set(paper_suites())


@pytest.mark.parametrize("suite", paper_suites())
def test_doc_table_and_suite_file_agree(suite: str) -> None:
    """Every option in the suite's table has that value in its TOML file, and every option the
    TOML file sets ([protocol], [model], [method_options], [check_options]) is in the table."""
    raw = tomllib.loads((SUITES / f"{suite}.toml").read_text())
    documented = doc_tables()[suite]
    for path, value in documented.items():
        try:
            actual = _at(raw, path)
        except KeyError:
            pytest.fail(f"{suite}.toml does not set {path} (docs/reproducing.md says {value!r})")
        assert actual == value, (
            f"{suite}.toml sets {path} = {actual!r}, docs/reproducing.md says {value!r}"
        )
    stated: dict[str, Any] = {}
    for table in TABLES:
        if table in raw:
            stated.update(_leaves(raw[table], table))
    missing = sorted(set(stated) - set(documented))
    assert not missing, (
        f"{suite}.toml sets {missing} but docs/reproducing.md's table does not list them"
    )


@pytest.mark.parametrize("suite", paper_suites())
def test_suite_options_are_real_options(suite: str) -> None:
    """Every (method, check) pair of the suite's grid resolves: each method, scorer, schedule
    and check option the suite sets exists and has a valid value."""
    grid = expand(load_suite(SUITES / f"{suite}.toml"))
    seen = set()
    for spec in grid.cells:
        if (spec.method, spec.check) not in seen:
            seen.add((spec.method, spec.check))
            resolve_cell(spec)
    assert seen


@pytest.mark.parametrize(
    ("suite", "std"),
    [
        ("su2020_cifar10", (0.2023, 0.1994, 0.2010)),
        ("su2020_cifar100", (0.2675, 0.2565, 0.2761)),
        ("grasp2020_cifar10", (0.2023, 0.1994, 0.2010)),
        ("frankle2021_cifar10", (0.229, 0.224, 0.225)),
    ],
)
def test_suite_normalisation_reaches_the_cells(suite: str, std: tuple[float, ...]) -> None:
    """The normalisation a paper suite sets is in every cell it runs, the dataset built with it
    divides by the authors' std, and it is part of each cell's result identity."""
    grid = expand(load_suite(SUITES / f"{suite}.toml"))
    raw = tomllib.loads((SUITES / f"{suite}.toml").read_text())
    options = raw["dataset_options"]
    assert all(dict(c.dataset_options) == options for c in grid.cells)
    assert instantiate("dataset", raw["dataset"], options).stats()[1] == std
    payload = cell_identity(grid.cells[0]).payload
    assert payload["dataset"]["options"] == options


def test_frankle_suite_runs_the_papers_ablations() -> None:
    """frankle2021_cifar10 runs, for SNIP, GraSP, SynFlow and magnitude, the clean run, the mask
    shuffled inside each layer, reinitialisation and global score inversion, and not the weight
    shuffle of Su et al."""
    grid = expand(load_suite(SUITES / "frankle2021_cifar10.toml"))
    pairs = {(c.method, c.check) for c in grid.cells}
    for method in ("snip", "grasp", "synflow", "magnitude_at_init"):
        assert {c for m, c in pairs if m == method} == {
            "none",
            "layerwise_rearrange",
            "reinit",
            "score_inversion",
        }
    inversion = next(c for c in grid.cells if c.check == "score_inversion")
    assert resolve_cell(inversion).check.scope == "global"  # type: ignore[union-attr]
    assert all(c.check != "layerwise_weight_shuffle" for c in grid.cells)


# ---------------------------------------------------------------- the classifier option
def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Linear(16, 4),
    )


def test_dense_classifier_keeps_the_last_linear_whole() -> None:
    """global with dense_classifier at 80 %: the last Linear keeps all its weights, the other
    layers keep round(0.2·N) − N_classifier by one threshold over their scores (top-k computed
    here), so the total is exact; without it the classifier is pruned like the rest."""
    layers = prunable_layers(_net())
    g = torch.Generator().manual_seed(1)
    scores = {layer.name: torch.rand(layer.shape, generator=g) for layer in layers}
    total = sum(layer.numel for layer in layers)
    head = layers[-1]
    counts = Global(dense_classifier=True).allocate(layers, 0.2, scores)
    assert counts[head.name] == head.numel == 64
    assert sum(counts.values()) == round(0.2 * total)
    body = layers[:-1]
    flat = torch.cat([scores[layer.name].flatten() for layer in body])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.topk(flat, round(0.2 * total) - head.numel).indices] = True
    start = 0
    for layer in body:
        assert counts[layer.name] == int(keep[start : start + layer.numel].sum()), layer.name
        start += layer.numel
    assert Global().allocate(layers, 0.2, scores)[head.name] < head.numel


def test_dense_classifier_through_prune() -> None:
    """Pruning with magnitude + global(dense_classifier) keeps the classifier's mask all ones
    and exactly round(d·N) weights overall; a density below the classifier's share is a
    one-line error."""
    method = Method(
        name="lt_like",
        description="t",
        family="initial",
        scorer="magnitude",
        schedule="global",
        schedule_options={"dense_classifier": True},
    )
    x = torch.zeros(40, 1, 6, 6, dtype=torch.uint8)
    data = DataBundle(
        name="toy",
        train=ArrayData(x=x, y=torch.arange(40) % 4),
        test=ArrayData(x=x[:4], y=torch.arange(4)),
        num_classes=4,
        mean=(0.5,),
        std=(0.25,),
    )
    model = _net()
    total = sum(layer.numel for layer in prunable_layers(model))
    masks = prune(model, data, method, 0.8, seed=0, allow_collapse=True).masks
    assert bool(masks["8.weight"].all())
    assert masks.kept() == round(0.2 * total)
    with pytest.raises(PrunekitError, match="dense_classifier"):
        prune(_net(), data, method, 1 - 60 / total, seed=0, allow_collapse=True)
    with pytest.raises(PrunekitError, match="no prunable Linear"):
        Global(dense_classifier=True).allocate(
            prunable_layers(nn.Conv2d(1, 2, 3)), 0.5, {"weight": torch.rand(2, 1, 3, 3)}
        )


# -------------------------------------------------------------- published comparisons
def _row(seed: int, final: float, best: float | None, sparsity: float = 0.9) -> ResultRow:
    return ResultRow(
        key=f"rt/{sparsity}/{seed}",
        suite="s",
        model="cifar_vgg19_bn",
        dataset="cifar10",
        method="random_ticket",
        check="none",
        sparsity=sparsity,
        seed=seed,
        protocol="p",
        status="done",
        final_accuracy=final,
        best_accuracy=best,
    )


def test_published_numbers_are_compared_with_the_matching_metric() -> None:
    """Su et al.'s 93.77 is a best-epoch accuracy: final accuracies 2 points lower do not enter
    the comparison, best ones do; rows without a best accuracy give no comparison."""
    assert lookup("cifar10", "cifar_vgg19_bn", "random_ticket", 0.9).metric == "best_accuracy"  # type: ignore[union-attr]
    rows = [_row(s, final=0.9177 + d, best=0.9377 + d) for s, d in enumerate((-0.001, 0.0, 0.001))]
    (c,) = compare_published(rows)
    assert c.metric == "best_accuracy" and c.measured_mean == pytest.approx(93.77)
    assert c.verdict == "consistent with published"
    assert compare_published([_row(s, final=0.93, best=None) for s in range(3)]) == []


def test_published_verdict_needs_three_seeds() -> None:
    """Two seeds: the verdict is "too few seeds" and no interval is given, however close."""
    (c,) = compare_published([_row(0, 0.93, 0.9377), _row(1, 0.93, 0.9378)])
    assert c.verdict == "too few seeds" and c.ci_low is None and c.ci_high is None and c.n == 2


def test_mean_interval_is_the_t_interval() -> None:
    """1..5: mean 3, SD 1.5811, t(0.975, 4) = 2.7764 from the table: 3 ± 1.9632."""
    low, high = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (low, high) == (pytest.approx(3 - 1.9632, abs=1e-3), pytest.approx(3 + 1.9632, abs=1e-3))
