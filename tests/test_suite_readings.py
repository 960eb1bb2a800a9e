"""A suite's readings of its results: the leaderboards' reference method and the papers'
published numbers. Both are suite data, validated like the other keys, and neither enters a
cell's identity or the protocol's fingerprint."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from prunekit.bench.grid import expand
from prunekit.bench.published import compare_published, published_numbers
from prunekit.bench.records import ResultRow
from prunekit.bench.report import build_report
from prunekit.bench.runner import cell_identity
from prunekit.bench.suite import PublishedNumber, load_suite, resolve_suite
from prunekit.errors import PrunekitError

SUITE = """
name = "readings"
dataset = "digits"
models = ["digits_mlp"]
sparsities = [0.8]
seeds = [0, 1]
methods = ["dense", "snip", "random_ticket", "magnitude_at_init"]
checks = ["none", "random_labels"]
[protocol]
epochs = 1
"""

PUBLISHED = """
[[published_numbers]]
source = "A paper, Table 2"
confirmed = true
model = "digits_mlp"
method = "snip"
sparsities = [0.8, 0.9]
accuracies = [91.5, 88.25]

[[published_numbers]]
source = "A survey"
model = "digits_mlp"
method = "dense"
sparsities = [0.0]
accuracies = [97.0]
metric = "final_accuracy"
"""


def _suite(tmp_path: Path, text: str, name: str = "readings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _with_key(line: str) -> str:
    """SUITE with one more top-level line (before the [protocol] table)."""
    return SUITE.replace("[protocol]", line + "\n[protocol]")


# ---------------------------------------------------------------------- reference method
def test_reference_method_defaults_to_the_random_ticket_and_is_read_from_the_file(tmp_path: Path) -> None:
    assert load_suite(_suite(tmp_path, SUITE)).reference_method == "random_ticket"
    suite = load_suite(_suite(tmp_path, _with_key('reference_method = "magnitude_at_init"')))
    assert suite.reference_method == "magnitude_at_init"


def test_reference_method_of_the_wrong_type_is_one_line_naming_key_and_file(tmp_path: Path) -> None:
    path = _suite(tmp_path, _with_key("reference_method = 3"))
    with pytest.raises(PrunekitError, match=r"invalid suite .*readings\.toml: 'reference_method' must be a string, got 3"):
        load_suite(path)


def test_unknown_reference_method_is_one_line_naming_key_file_and_the_nearest_name(tmp_path: Path) -> None:
    path = _suite(tmp_path, _with_key('reference_method = "random_tickt"'))
    suite = load_suite(path)  # a suite loads before every plugin is known: checked with the grid
    with pytest.raises(PrunekitError) as err:
        expand(suite)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and "'reference_method'" in message and "did you mean random_ticket" in message


def test_readings_change_no_cell_identity_and_no_fingerprint(tmp_path: Path) -> None:
    """The same grid, cell for cell, and the same identities, with another reference method
    and with published numbers."""
    base = load_suite(_suite(tmp_path, SUITE))
    other = load_suite(_suite(tmp_path, _with_key('reference_method = "snip"') + PUBLISHED, "other.toml"))
    assert other.reference_method == "snip" and other.published_numbers
    assert other.fingerprint() == base.fingerprint()
    cells, others = expand(base).cells, expand(other).cells
    assert cells == others
    assert [cell_identity(c, "cpu").key for c in cells] == [cell_identity(c, "cpu").key for c in others]


def _row(method: str, seed: int, accuracy: float, suite: str = "readings", check: str = "none") -> ResultRow:
    sparsity = 0.0 if method == "dense" else 0.8
    return ResultRow(
        key=f"{suite}/{method}/{check}/{seed}",
        suite=suite,
        model="digits_mlp",
        dataset="digits",
        method=method,
        check=check,
        sparsity=sparsity,
        seed=seed,
        protocol="p",
        status="done",
        final_accuracy=accuracy,
        best_accuracy=accuracy,
        achieved_sparsity=sparsity,
    )


ROWS = [
    _row(method, seed, base + 0.01 * seed)
    for method, base in (("snip", 0.90), ("random_ticket", 0.88), ("magnitude_at_init", 0.85), ("dense", 0.97))
    for seed in (0, 1)
]


def test_leaderboards_measure_against_the_suites_reference_method(tmp_path: Path) -> None:
    """Δ is against the suite's reference: snip − magnitude_at_init = 5 points per seed, and the
    reference itself has none; the table heads say which method it is."""
    default = build_report(ROWS, n_boot=20)
    assert default.reference_method == "random_ticket"
    by = {r.method: r for r in default.ranks if r.sparsity == 0.8}
    assert by["snip"].vs_random_ticket is not None and by["snip"].vs_random_ticket.mean == pytest.approx(2.0)
    suite = load_suite(_suite(tmp_path, _with_key('reference_method = "magnitude_at_init"')))
    data = build_report(ROWS, n_boot=20, suites=[suite])
    assert data.reference_method == "magnitude_at_init"
    by = {r.method: r for r in data.ranks if r.sparsity == 0.8}
    assert by["snip"].vs_random_ticket is not None and by["snip"].vs_random_ticket.mean == pytest.approx(5.0)
    assert by["random_ticket"].vs_random_ticket is not None
    assert by["random_ticket"].vs_random_ticket.mean == pytest.approx(3.0)
    assert by["magnitude_at_init"].vs_random_ticket is None
    from prunekit.bench.report import leaderboard_tables

    (board, *_) = leaderboard_tables(data)
    assert "Δ vs magnitude_at_init, points [95% CI]" in board.columns


def test_suites_naming_different_references_are_reported_one_at_a_time(tmp_path: Path) -> None:
    a = load_suite(_suite(tmp_path, _with_key('reference_method = "snip"')))
    b = attrs.evolve(a, name="other", reference_method="magnitude_at_init")
    rows = [*ROWS, _row("snip", 0, 0.9, suite="other")]
    with pytest.raises(PrunekitError, match=r"different reference methods: other \(magnitude_at_init\), readings \(snip\); report one suite at a time \(--suite\)"):
        build_report(rows, n_boot=20, suites=[a, b])


# ------------------------------------------------------------------------ published numbers
def test_published_numbers_parse_into_typed_values_on_the_suites_dataset(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, SUITE + PUBLISHED))
    assert suite.published_numbers == (
        PublishedNumber(dataset="digits", model="digits_mlp", method="snip", sparsity=0.8, accuracy=91.5,
                        source="A paper, Table 2", confirmed=True),
        PublishedNumber(dataset="digits", model="digits_mlp", method="snip", sparsity=0.9, accuracy=88.25,
                        source="A paper, Table 2", confirmed=True),
        PublishedNumber(dataset="digits", model="digits_mlp", method="dense", sparsity=0.0, accuracy=97.0,
                        source="A survey", confirmed=False, metric="final_accuracy"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("accuracies = [91.5]", r"'published_numbers\[0\]\.accuracies' must be one accuracy per sparsity \(2\)"),
        ("accuracies = [91.5, 188.0]", r"'published_numbers\[0\]\.accuracies' must be a non-empty list of test accuracies in percent"),
        ("sparsities = [0.8, 1.0]", r"'published_numbers\[0\]\.sparsities' must be a non-empty list of numbers in \[0, 1\)"),
        ('metric = "mean_accuracy"', r"'published_numbers\[0\]\.metric' must be \"best_accuracy\" or \"final_accuracy\""),
        ('colour = "blue"', r"unknown key 'published_numbers\[0\]\.colour'"),
        ("sparsities = [0.8, 0.8]", r"published_numbers\[0\] gives snip on digits_mlp at sparsity 0\.8 a second published number"),
    ],
)
def test_bad_published_numbers_are_one_line_naming_entry_key_and_file(tmp_path: Path, entry: str, message: str) -> None:
    key = entry.split(" = ", 1)[0]
    lines = [line for line in PUBLISHED.split("\n[[published_numbers]]")[1].splitlines() if not line.startswith(key + " ")]
    text = SUITE + "\n[[published_numbers]]" + "\n".join(lines) + "\n" + entry + "\n"
    path = _suite(tmp_path, text)
    with pytest.raises(PrunekitError, match=message) as err:
        load_suite(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_published_key_is_named(tmp_path: Path) -> None:
    path = _suite(tmp_path, SUITE + '\n[[published_numbers]]\nmodel = "digits_mlp"\nmethod = "snip"\n')
    with pytest.raises(PrunekitError, match=r"the key 'published_numbers\[0\]\.sparsities' is missing"):
        load_suite(path)


def test_the_report_compares_rows_with_their_own_suites_numbers(tmp_path: Path) -> None:
    """A suite file's numbers (not installed) reach the report through the suite: snip at 80 %
    (best accuracy 90.5 mean beside 91.5), dense in its final accuracy (97.5 beside 97.0)."""
    suite = load_suite(_suite(tmp_path, SUITE + PUBLISHED))
    assert compare_published(ROWS) == []  # no installed suite publishes digits numbers
    data = build_report(ROWS, n_boot=20, suites=[suite])
    found = {(c.method, c.sparsity): c for c in data.published}
    assert set(found) == {("snip", 0.8), ("dense", 0.0)}
    assert found[("snip", 0.8)].difference == pytest.approx(90.5 - 91.5)
    assert found[("dense", 0.0)].metric == "final_accuracy" and found[("dense", 0.0)].published.source == "A survey"


def test_the_paper_suites_carry_the_published_numbers() -> None:
    """Every published number lives in the data of the suites that reproduce it: the Su et al.
    suites hold all of their dataset's numbers, each GraSP suite its model's CIFAR-10 ones."""
    counts = {name: len(resolve_suite(name).published_numbers) for name in
              ("su2020_cifar10", "su2020_cifar100", "grasp2020_cifar10", "grasp2020_cifar10_resnet32")}  # fmt: skip
    assert counts == {"su2020_cifar10": 20, "su2020_cifar100": 20, "grasp2020_cifar10": 10, "grasp2020_cifar10_resnet32": 10}
    union = published_numbers()
    for name in counts:
        for p in resolve_suite(name).published_numbers:
            assert union[(p.dataset, p.model, p.method, p.sparsity)] == p  # the suites agree where they overlap
    assert {p.source for p in union.values()} == {
        "Su et al. 2020, Table 1", "Wang et al. 2020 (GraSP paper), as transcribed", "secondary source"
    }
