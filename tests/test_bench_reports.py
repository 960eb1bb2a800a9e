"""Benchmark reports (terminal, files, figures), published numbers and `prunekit report`."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from prunekit import atomic as atomic_module
from prunekit.bench.published import compare_published, lookup, published_numbers
from prunekit.bench.records import ResultRow
from prunekit.bench.report import MANIFEST, build_report, print_report, renderers, write_reports
from prunekit.errors import PrunekitError
from tests.cli_runner import run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODEL, DATASET, PROTOCOL = "cifar_vgg19_bn", "cifar10", "proto-A-0123456789abcdef"
SCORERS = {"snip": "snip", "lrr": "magnitude", "random_ticket": "random", "grasp": "grasp", "wild": "random"}
TRAINING = {
    "epochs": 160,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 0.0005,
    "lr_schedule": "multistep",
    "milestones": [0.5, 0.75],
    "gamma": 0.1,
    "warmup_epochs": 0,
}
ENVIRONMENT = {
    "prunekit": "0.1.0",
    "torch": "2.x",
    "timm": "1.0.0",
    "python": "3.11.7",
    "device": "cpu",
    "device_name": "x86_64",
    "test_size": 10000,
    "train_size": 50000,
    "augmentation": {"crop_padding": 4, "hflip": True},
}
FIGURES = ("accuracy_vs_sparsity", "check_effects", "layer_density")


def identity(method: str, check: str) -> dict[str, Any]:
    """An identity payload as the runner records it (origins name plugin and version)."""
    scorer = SCORERS.get(method)
    payload: dict[str, Any] = {
        "prunekit": "0.1.0",
        "model": {"name": MODEL, "options": {}, "origin": "prunekit 0.1.0 (prunekit_plugins.models.cifar_vgg)"},
        "dataset": {"name": DATASET, "origin": "prunekit_plugins.datasets 0.1.0", "options": {"normalization": "grasp_code"}},
        "method": {"origin": "prunekit_plugins.methods 0.1.0", "recipe": {"name": method, "scorer": scorer, "schedule": "global"}},
        "trainer": {"name": "sgd", "origin": "prunekit_plugins.sgd 0.1.0"},
        "protocol": TRAINING,
    }
    if scorer is not None:
        payload["scorer"] = {"name": scorer, "options": {}, "origin": f"prunekit_plugins.{scorer}_plugin 0.{len(scorer)}.0"}
        payload["schedule"] = {"name": "global", "options": {}, "origin": "prunekit_plugins.schedules 0.1.0"}
    if check != "none":
        payload["check"] = {"name": check, "options": {}, "origin": "prunekit_plugins.checks 0.1.0"}
    return payload


def cell(method: str, check: str, sparsity: float, seed: int, accuracy: float | None, **kw: Any) -> ResultRow:
    """A done cell of the VGG19 / CIFAR-10 synthetic benchmark (accuracy as a fraction); snip's
    masks have an effective sparsity 1.5 points above the asked one, the others none recorded."""
    fields: dict[str, Any] = dict(  # noqa: C408 - ResultRow's keywords
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
        effective_sparsity=sparsity + 0.015 if method == "snip" else None,
        layer_density={"features.0.weight": 0.9, "features.3.weight": 1 - sparsity, "classifier.weight": 0.5},
        history=[{"epoch": e, "test_accuracy": (accuracy or 0.0) * e / 3, "lr": 0.1} for e in (1, 2, 3)],
        environment=dict(ENVIRONMENT),
        bench_id="bench-1",
        spec={"trainer": "sgd", "protocol": TRAINING, "dataset_options": [["normalization", "grasp_code"]], "model_options": []},
        identity=identity(method, check),
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
    rows += [cell("dense", "none", 0.0, seed, 0.942 + off, achieved_sparsity=0.0) for seed, off in enumerate(offsets)]
    rows.append(
        cell("synflow", "none", 0.9, 0, None, status="failed", error="RuntimeError: CUDA out of memory\n  at line 3")
    )
    rows.append(cell("random_ticket", "random_labels", 0.9, 0, None, status="not_applicable"))
    return rows


def extreme_rows() -> list[ResultRow]:
    """At 90 %: grasp's accuracy rises by 5.2 ± ~0.3 points under invert (raises accuracy);
    wild's seeds scatter (99.9, 60, 99), so its 95 % interval and its reinit effect's 90 %
    interval reach past 100 points; one diverged and one stale cell."""
    rows = []
    for seed, (clean, noise) in enumerate(((0.900, 0.0), (0.902, 0.003), (0.899, -0.002))):
        rows.append(cell("grasp", "none", 0.9, seed, clean))
        rows.append(cell("grasp", "invert", 0.9, seed, clean + 0.052 + noise))
    for seed, (clean, perturbed) in enumerate(((0.999, 0.2), (0.6, 0.95), (0.99, 0.3))):
        rows.append(cell("wild", "none", 0.9, seed, clean))
        rows.append(cell("wild", "reinit", 0.9, seed, perturbed))
    rows.append(cell("grasp", "none", 0.95, 0, None, status="diverged", error="DivergedError: loss is nan at epoch 3"))
    rows.append(cell("lrr", "none", 0.98, 0, 0.5, status="stale", error="produced by other code (differs in: method)"))
    return rows


def all_rows() -> list[ResultRow]:
    return synthetic_rows() + extreme_rows()


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format and every figure of all_rows(), written once for the module."""
    out = tmp_path_factory.mktemp("full") / "report"
    write_reports(build_report(all_rows()), out)
    return out


def _md_table(markdown: str, heading: str, *, header: bool = False) -> list[list[str]]:
    """The rows of the first Markdown table after ``heading`` (a line of its own), with its
    header row first when ``header``."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif table:
            break
    return table[:1] + table[2:] if header else table[2:]  # the rule row never


# --------------------------------------------------------------------------------- files
def test_write_reports_writes_every_file(full_report: Path) -> None:
    """md, html, csv, json and each figure as PNG, SVG and PDF; CSV one row per cell in
    fractions; JSON verdicts as built, values in fractions; figures ready for a paper (PNG at
    200 dpi, SVG with text kept as text, PDF with embedded TrueType fonts, not Type 3, and no
    creation date)."""
    rows = all_rows()
    figures = {f"{name}.{fmt}" for name in FIGURES for fmt in ("png", "svg", "pdf")}
    names = {p.name for p in full_report.iterdir()}
    assert names == {"report.md", "report.html", "results.csv", "report.json", MANIFEST} | figures
    manifest = json.loads((full_report / MANIFEST).read_text())
    assert manifest["complete"] and set(manifest["files"]) == names - {MANIFEST} and manifest["rows"] == len(rows)

    with open(full_report / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and {r["key"] for r in table} == {r.key for r in rows}
    failed = next(r for r in table if r["status"] == "failed")
    assert failed["method"] == "synflow" and failed["final_accuracy"] == ""
    lrr = next(r for r in table if r["key"] == "lrr/none/0.9/0")
    assert float(lrr["final_accuracy"]) == pytest.approx(0.94) and float(lrr["sparsity"]) == 0.9

    payload = json.loads((full_report / "report.json").read_text())
    assert "fractions in [0, 1]" in payload["units"]["values"]
    verdicts = {(v["method"], v["check"]): v["verdict"] for v in payload["verdicts"]}
    assert verdicts == {
        ("lrr", "half_dataset"): "passes",
        ("snip", "random_labels"): "fails",
        ("grasp", "invert"): "raises accuracy",
        ("wild", "reinit"): "inconclusive",
    }
    assert len(payload["cells"]) == len(rows)
    board = [r for r in payload["leaderboard"] if r["sparsity"] == 0.9]
    assert [r["method"] for r in board] == ["lrr", "random_ticket", "snip", "grasp", "wild", "dense"]
    assert board[0]["mean"] == pytest.approx((0.94 + 0.941 + 0.9415) / 3)  # a fraction, not points
    assert board[2]["vs_random_ticket"]["mean"] == pytest.approx(-0.007)
    assert board[-1]["reference"] is True
    assert sorted(payload["figures"]) == sorted(figures)

    for name in FIGURES:
        png = (full_report / f"{name}.png").read_bytes()
        assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 800 and height > 400
        svg = ET.fromstring((full_report / f"{name}.svg").read_bytes())
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
        assert MODEL in texts  # text kept as text: editable, searchable
        pdf = (full_report / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType, not Type 3
        assert b"/CreationDate" not in pdf
    svg_texts = (full_report / "check_effects.svg").read_text()
    for mark in ("passes", "fails", "raises accuracy", "inconclusive", "not run / not applicable"):
        assert mark in svg_texts  # the heat map's legend
    assert "accuracy points" in svg_texts  # the colour bar's label

    markdown = (full_report / "report.md").read_text()
    assert "![Accuracy against sparsity](accuracy_vs_sparsity.png)" in markdown
    assert "[SVG](check_effects.svg) and [PDF](check_effects.pdf)" in markdown
    assert f"1 of {len(rows)} cells failed: 1 × RuntimeError: CUDA out of memory" in markdown
    assert "results.csv and report.json hold both as fractions in [0, 1]" in markdown

    page = (full_report / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for name in FIGURES:
        assert f'<img src="{name}.svg"' in page and f'href="{name}.pdf"' in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert '<td class="v-passes">passes at both sparsities</td>' in page


def test_protocol_versions_and_sparsities_open_the_report(full_report: Path) -> None:
    """The report opens with the protocol in full (model, data, sizes, epochs, optimiser,
    schedule, augmentation, precision, seeds, margin), the fingerprint only as a footnote;
    then the plugin versions; achieved and effective sparsity stand beside the asked one."""
    markdown = (full_report / "report.md").read_text()
    sections = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert sections[:4] == ["## Protocol", "## Software versions", "## How to read this report", "## Leaderboard"]
    protocol = dict(_md_table(markdown, "## Protocol"))  # type: ignore[arg-type]
    assert protocol["models"] == MODEL
    assert protocol["data"] == "cifar10 (normalization=grasp_code)"
    assert protocol["images"] == "cifar10: 50000 training, 10000 test images"
    assert protocol["epochs"] == "160" and protocol["batch size"] == "64" and protocol["learning rate"] == "0.1"
    assert protocol["optimiser"] == "SGD, momentum 0.9, weight decay 0.0005"
    assert protocol["learning-rate schedule"] == "step decay ×0.1 at 50%, 75% of the epochs"
    assert protocol["training augmentation"] == "random crop after 4-pixel zero padding + random horizontal flip"
    assert protocol["precision"] == "fp32"
    assert protocol["seeds"] == "0, 1, 2 (3 per cell)"
    assert protocol["sparsities asked"] == "90%, 95%"
    assert "±1 accuracy points" in protocol["verdicts"]
    assert protocol["protocol fingerprint"] == "proto-A-0123¹"
    assert f"¹ protocol fingerprint (hash of the training and scoring protocol): {PROTOCOL}" in markdown
    titles = [line for line in markdown.splitlines() if line.startswith("#")]
    assert not [t for t in titles if "proto-A" in t]  # never in a title

    software = {r[0]: r[1:] for r in _md_table(markdown, "## Software versions")}
    assert software["prunekit"] == ["0.1.0", "core"] and software["torch"] == ["2.x", "runtime"]
    assert software["prunekit_plugins.snip_plugin"] == ["0.4.0", "scorer snip"]
    assert software["prunekit_plugins.models.cifar_vgg"] == ["0.1.0", f"model {MODEL}"]
    assert software["prunekit_plugins.methods"][1].startswith("method ")

    board = {r[1]: r for r in _md_table(markdown, f"### {MODEL} on {DATASET}: sparsity 90% asked")}
    assert board["snip"][6:] == ["90.00", "91.50"]  # achieved, effective
    assert board["lrr"][6:] == ["90.00", "–"]  # effective sparsity not computed
    assert board["dense"][0] == "ref" and board["dense"][6] == "0.00"

    page = (full_report / "report.html").read_text()
    assert page.index('<h2 id="protocol">') < page.index('<h2 id="software-versions">') < page.index('<h2 id="leaderboard">')
    assert "<td>learning rate</td><td>0.1</td>" in page
    settings = json.loads((full_report / "report.json").read_text())["protocol"][0]["settings"]
    assert settings["epochs"] == "160" and settings["batch size"] == "64"


def test_every_label_is_explained(full_report: Path) -> None:
    """Every verdict and mark the report shows is in its "How to read" table; verdicts over
    sparsities read in words ("at both sparsities"), never as a bare count like "(2/2)"."""
    markdown = (full_report / "report.md").read_text()
    labels = {row[0] for row in _md_table(markdown, "## How to read this report")}
    verdict_table = _md_table(markdown, f"### {MODEL} on {DATASET}: sanity-check verdicts (sparsities 90%, 95%)")
    shown = {cell for row in verdict_table for cell in row[1:]}
    assert shown == {"passes at both sparsities", "fails at both sparsities", "raises accuracy", "inconclusive", "–"}
    for cell_text in shown:
        base = cell_text.removesuffix(" at both sparsities")
        assert base in labels, cell_text
    assert "… at both sparsities / at all N sparsities" in labels
    effects = _md_table(markdown, f"### {MODEL} on {DATASET}: check effects")
    assert {row[9] for row in effects} <= labels
    for mark in ("(clipped)", "(no seed variance)", "(too few seeds)", "(unpaired)", "ref", "–", "P, F, R, ?, <3"):
        assert mark in labels
    assert "(clipped)" in markdown and "(no seed variance)" in markdown  # used, hence explained
    for name in ("report.md", "report.html"):
        assert not re.search(r"\(\d+/\d+\)", (full_report / name).read_text())


def _intervals(text: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in re.findall(r"\[([-+]?\d+\.\d+), ([-+]?\d+\.\d+)\]", text)]


def test_no_interval_leaves_0_100(full_report: Path) -> None:
    """wild's seeds (99.9, 60, 99) give a 95 % interval past 100 and a reinit effect whose 90 %
    interval reaches past 100: both are cut where the quantity can lie and marked; in the JSON
    every accuracy interval lies in [0, 1] and every effect inside [clean − 1, clean]."""
    markdown = (full_report / "report.md").read_text()
    board = {r[1]: r for r in _md_table(markdown, f"### {MODEL} on {DATASET}: sparsity 90% asked")}
    wild = board["wild"][3]
    assert wild.endswith("(clipped)")
    ((low, high),) = _intervals(wild)
    assert high == 100.0 and 0.0 <= low < 86.3
    for row in board.values():
        for lo, hi in _intervals(row[3]):
            assert 0.0 <= lo <= hi <= 100.0
        for lo, hi in _intervals(row[5]):
            assert -100.0 <= lo <= hi <= 100.0
    effects = {(r[0], r[1], r[2]): r for r in _md_table(markdown, f"### {MODEL} on {DATASET}: check effects")}
    wild_effect = effects[("wild", "reinit", "90%")]
    clean = float(wild_effect[6])  # 86.30
    ((low, high),) = _intervals(wild_effect[8])
    assert wild_effect[8].endswith("(clipped)") and high == pytest.approx(clean, abs=0.01) and low >= clean - 100
    for row in effects.values():
        for lo, hi in _intervals(row[8]):
            assert -100.0 <= lo <= hi <= 100.0

    payload = json.loads((full_report / "report.json").read_text())
    for r in payload["leaderboard"]:
        if r["ci_low"] is not None:
            assert 0.0 <= r["ci_low"] <= r["ci_high"] <= 1.0
        delta = r["vs_random_ticket"]
        if delta and delta["ci_low"] is not None:
            assert -1.0 <= delta["ci_low"] <= delta["ci_high"] <= 1.0
    assert next(r for r in payload["leaderboard"] if r["method"] == "wild" and r["sparsity"] == 0.9)["ci_clipped"]
    for e in payload["effects"]:
        if e["ci_low"] is not None:
            assert e["clean_mean"] - 1.0 - 1e-12 <= e["ci_low"] <= e["ci_high"] <= e["clean_mean"] + 1e-12
    assert next(e for e in payload["effects"] if e["method"] == "wild")["ci_clipped"]


def test_significant_gain_is_labelled_raises_accuracy(full_report: Path) -> None:
    """grasp gains 5.2 points under invert at every seed: "raises accuracy" (not inconclusive)
    in the verdict table, coloured as such, with an effect interval below 0."""
    markdown = (full_report / "report.md").read_text()
    header, *rows = _md_table(markdown, f"### {MODEL} on {DATASET}: sanity-check verdicts (sparsities 90%, 95%)", header=True)
    verdicts = {r[0]: dict(zip(header, r)) for r in rows}
    assert verdicts["grasp"]["invert"] == "raises accuracy"
    effect = next(r for r in _md_table(markdown, f"### {MODEL} on {DATASET}: check effects") if r[:2] == ["grasp", "invert"])
    assert effect[9] == "raises accuracy"
    ((_, high),) = _intervals(effect[8])
    assert high < 0.0 and float(effect[8].split()[0]) == pytest.approx(-5.23, abs=0.01)
    assert '<td class="v-raises-accuracy">raises accuracy</td>' in (full_report / "report.html").read_text()


def test_diverged_cells_are_counted_per_method_and_never_ranked(full_report: Path) -> None:
    """grasp's diverged cell at 95 % is counted in its own table and enters no leaderboard."""
    markdown = (full_report / "report.md").read_text()
    (row,) = _md_table(markdown, "## Diverged cells")
    assert row[:4] == ["grasp", "1", "7", "95%"]
    board = {r[1] for r in _md_table(markdown, f"### {MODEL} on {DATASET}: sparsity 95% asked")}
    assert "grasp" not in board
    stale = _md_table(markdown, "## Stale rows (not used)")
    assert stale[0][0] == "1" and "differs in: method" in stale[0][1]


def test_formats_and_plots_can_be_chosen(tmp_path: Path) -> None:
    """Only the asked formats are written (beside the manifest); plots=False writes no
    figure; a bad format is refused."""
    written = write_reports(build_report(synthetic_rows()), tmp_path, formats=("csv",), plots=False)
    assert [p.name for p in written] == ["results.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "results.csv"]
    with pytest.raises(PrunekitError, match="unknown report format"):
        write_reports(build_report(synthetic_rows()), tmp_path, formats=("pdf",))


def test_nothing_half_written_when_rendering_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renderer that raises leaves no file at all: everything is rendered before writing."""

    def broken(*args: Any) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(renderers, "render_json", broken)
    with pytest.raises(RuntimeError, match="boom"):
        write_reports(build_report(synthetic_rows()), tmp_path / "out", plots=False)
    assert not (tmp_path / "out").exists()


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename fails the old report stays whole and no temporary file is left."""
    target = tmp_path / "report.md"
    target.write_text("previous report")

    def refuse(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_module.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_reports(build_report(synthetic_rows()), tmp_path, formats=("md",), plots=False)
    assert target.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_terminal_report() -> None:
    """The protocol, leaderboard with Δ vs random ticket, the verdict matrix in words and
    colour, the verdict labels, and the failure line."""
    console = Console(record=True, width=240, color_system="truecolor")
    print_report(build_report(synthetic_rows()), console)
    text = console.export_text(clear=False)
    assert "Protocol" in text and "learning rate" in text and "step decay ×0.1" in text
    assert "cifar_vgg19_bn on cifar10: sparsity 90% asked" in text
    assert "-0.70 (no seed variance)" in text  # snip vs random ticket, paired: equal per seed
    assert "passes at both sparsities" in text and "fails at both sparsities" in text
    assert "Verdict labels" in text and "two one-sided t tests" in text
    assert "1 of 35 cells failed: 1 × RuntimeError: CUDA out of memory; 1 not applicable" in text
    assert "93.88" in text and "93.77" in text  # measured (best epoch, as published) beside published
    styled = console.export_html(inline_styles=True)
    assert "passes at both sparsities" in styled and "#008000" in styled  # green


# --------------------------------------------------------------------------- published
def test_published_numbers_table() -> None:
    """The paper-spec numbers (the paper suites' [[published_numbers]]) are keyed by our names;
    SNIP/GraSP and dense are unconfirmed."""
    assert lookup("cifar10", "cifar_vgg19_bn", "random_ticket", 0.9).accuracy == 93.77  # type: ignore[union-attr]
    assert lookup("cifar100", "cifar_resnet32", "random_ticket", 0.98).accuracy == 60.11  # type: ignore[union-attr]
    snip = lookup("cifar100", "cifar_vgg19_bn", "snip", 0.98)
    assert snip is not None and snip.accuracy == 58.46 and not snip.confirmed
    dense = lookup("cifar10", "cifar_resnet32", "dense", 0.0)
    assert dense is not None and dense.accuracy == 94.80 and not dense.confirmed
    assert lookup("cifar10", "cifar_vgg19_bn", "synflow", 0.9) is None
    assert len(published_numbers()) == 2 * 6 + 4 * 6 + 4


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
def _store(path: Path, rows: list[ResultRow]) -> Path:
    from prunekit.bench.store import ResultStore

    with ResultStore(path) as store:
        store.record(*rows)
    return path


@pytest.fixture
def current(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic rows count as results of today's code (their keys are not real keys, so
    the stale check, tested with real cells elsewhere, would mark every one stale)."""
    from prunekit.bench import runner

    monkeypatch.setattr(runner, "mark_stale", lambda rows: list(rows))


def test_report_command_regenerates_files(tmp_path: Path, current: None, capsys: pytest.CaptureFixture[str]) -> None:
    """`prunekit report --db ... --format md --format json --no-plots --json` writes those two
    into --out and prints the verdicts as JSON."""
    db = _store(tmp_path / "results.db", synthetic_rows())
    out_dir = tmp_path / "rep"
    code, out, err = run_cli(
        ["report", "--db", str(db), "--out", str(out_dir), "--format", "md", "--format", "json", "--no-plots", "--json"],
        capsys,
    )
    assert code == 0, err
    payload = json.loads(out)
    assert {(v["method"], v["check"], v["verdict"]) for v in payload["verdicts"]} == {
        ("lrr", "half_dataset", "passes"),
        ("snip", "random_labels", "fails"),
    }
    assert "cells" not in payload
    assert sorted(Path(p).name for p in payload["files"]) == ["report.json", "report.md"]
    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST, "report.json", "report.md"]


def test_regenerating_a_report_leaves_no_stale_file(
    full_report: Path, tmp_path: Path, current: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder holding a full report of other rows (every format, every figure) and two files
    of the user's: `prunekit report --format md --format html --no-plots` leaves the new
    Markdown and HTML only, beside the user's files; a later `--format json` replaces those."""
    out_dir = tmp_path / "rep"
    shutil.copytree(full_report, out_dir)
    (out_dir / "notes.txt").write_text("mine")
    (out_dir / "draft.png").write_bytes(PNG_SIGNATURE)
    db = _store(tmp_path / "results.db", [r for r in synthetic_rows() if r.method in ("lrr", "dense")])
    argv = ["report", "--db", str(db), "--out", str(out_dir), "--no-plots"]
    code, _, err = run_cli([*argv, "--format", "md", "--format", "html"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST, "draft.png", "notes.txt", "report.html", "report.md"]
    markdown = (out_dir / "report.md").read_text()
    assert "lrr" in markdown and "snip" not in markdown and "15 cells: 15 done" in markdown
    assert (out_dir / "notes.txt").read_text() == "mine"
    code, _, err = run_cli([*argv, "--format", "json"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [MANIFEST, "draft.png", "notes.txt", "report.json"]

    (out_dir / MANIFEST).write_text("not a manifest")
    code, _, err = run_cli([*argv, "--format", "md"], capsys)
    assert code == 1 and err.count("\n") == 1 and "is not a prunekit report manifest" in err
    assert (out_dir / "report.json").is_file()


def test_report_command_default_out_and_terminal(
    tmp_path: Path, current: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --out the files go to prunekit-report/ beside the store (where `prunekit bench`
    writes them); the terminal gets the tables."""
    db = _store(tmp_path / "results.db", synthetic_rows())
    code, out, err = run_cli(["report", "--db", str(db), "--no-plots", "--tolerance", "0.5"], capsys)
    assert code == 0, err
    assert "sanity-check verdicts" in out and "wrote 4 files to" in out
    assert (tmp_path / "prunekit-report" / "results.csv").is_file()
    assert not (tmp_path / "prunekit-report" / "check_effects.png").exists()
    settings = json.loads((tmp_path / "prunekit-report" / "report.json").read_text())["settings"]
    assert settings["tolerance_points"] == 0.5 and settings["margin"] == 0.005


def test_report_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing store, an empty suite and a bad confidence: one line each, nothing written."""
    code, _, err = run_cli(["report", "--db", str(tmp_path / "missing.sqlite")], capsys)
    assert code == 1 and err.count("\n") == 1 and "no results store at" in err
    db = _store(tmp_path / "results.db", synthetic_rows())
    code, _, err = run_cli(["report", "--db", str(db), "--suite", "other"], capsys)
    assert code == 1 and err.count("\n") == 1 and "holds no results for suite 'other'" in err
    code, _, err = run_cli(["report", "--db", str(db), "--confidence", "95"], capsys)
    assert code == 1 and "--confidence" in err
    assert not (tmp_path / "prunekit-report").exists()
