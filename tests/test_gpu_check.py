"""benchmarks/gpu_check.py: ``--help`` works without a GPU, and the CPU dry run writes a JSON
report with every field filled (GPU-only figures marked "not measured") and its Markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
NOT_MEASURED = "not measured"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # toy sizes: one thread, steady on a busy machine
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600, check=False)


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}/{i}")
    else:
        yield path, value


def test_help_works_without_a_gpu() -> None:
    """--help prints the usage with every option and exits 0."""
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--device", "--quick", "--out", "--jobs"):
        assert option in done.stdout


def test_cpu_dry_run_fills_every_field(tmp_path: Path) -> None:
    """--device cpu --quick exits 0 and writes gpu_check.json, where no field is empty or an
    error, GPU-only fields read "not measured", measured figures are numbers in range, and the
    correctness checks it can run on a CPU pass; gpu_check.md summarises it."""
    done = _run("--device", "cpu", "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    leaves = dict(_leaves(report))
    assert all(v is not None and v != "" for v in leaves.values()), [k for k, v in leaves.items() if v is None]
    assert not [k for k in leaves if k.endswith("/error")]
    assert report["failures"] == [] and report["quick"] is True

    c, speed, scale = report["correctness"], report["speed"], report["scale"]
    for gpu_only in ("bf16_autocast", "channels_last", "fused_sgd"):
        assert c["masks_hold"][gpu_only] == NOT_MEASURED
    assert c["masks_hold"]["this_device"] is True
    assert all(c["scorer_agreement"][name] == NOT_MEASURED for name in ("snip", "grasp", "synflow", "synflow_float64"))
    sanity = c["accuracy_sanity"]
    assert sanity["passed"] is True and sanity["dense_accuracy"] >= 0.4 and sanity["masked_accuracy"] >= 0.4
    assert report["environment"]["cuda"] == NOT_MEASURED

    for model in ("cifar_resnet32", "cifar_vgg19_bn"):
        r = speed["epoch_vs_dataloader"][model]
        assert r["plain_s_per_epoch"] > 0 and r["prunekit_s_per_epoch"] > 0 and r["images_per_s"] > 0
        assert r["speedup"] == r["plain_s_per_epoch"] / r["prunekit_s_per_epoch"]
        assert r["met"] == NOT_MEASURED and r["peak_memory_mib"] == NOT_MEASURED
    assert speed["masked_dense_step"]["ratio"] > 0
    costs = speed["scorer_cost"]["cifar_resnet20"]
    assert all(costs[k] > 0 for k in ("snip", "grasp", "synflow x2")) and costs["peak_memory_mib"] == NOT_MEASURED

    assert scale["suite"] == "su2020_cifar10" and scale["cells"] > 0 and scale["jobs"] == 1
    assert set(scale["seconds_per_epoch"]) == {"cifar_vgg19_bn", "cifar_resnet32"}
    assert scale["projected_device_hours"] > 0
    assert scale["projected_gpu_hours"] == NOT_MEASURED and scale["projected_wall_hours"] == NOT_MEASURED

    summary = (tmp_path / "gpu_check.md").read_text()
    assert "## Correctness" in summary and "## Speed" in summary and "## Scale" in summary
