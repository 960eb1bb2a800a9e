"""GPU check: prunekit's correctness, speed and scale on one machine, in one command.

Run it whenever a CUDA machine is at hand (about 10 minutes, nothing to install or download;
the data are synthetic CIFAR-shaped images)::

    python benchmarks/gpu_check.py --out gpu-check

It writes ``gpu_check.json`` (every figure) and ``gpu_check.md`` (a summary with goals and
verdicts) into ``--out``. Sections:

* correctness on the device — pruned weights stay exactly zero through training with bf16
  autocast, channels_last and fused SGD (each seen active); SNIP, GraSP and SynFlow masks on the
  device agree with the CPU's for the same weights and batch (goal ≥ 0.999 of positions); a
  dense and a 90%-sparse SNIP net both learn an easy synthetic task (accuracy sanity);
* speed — prunekit's epoch vs the plain DataLoader loop of ``bench_epoch_vs_dataloader.py`` on
  cifar_resnet32 and cifar_vgg19_bn (goal ≥ 3×), images/s, the masked/dense step ratio (goal ≤
  1.03), the scorers' cost ratios of ``bench_scorers.py`` and peak GPU memory;
* scale — per-epoch times at the ``su2020_cifar10`` protocol's batch size, projected to that
  suite's GPU-hours and to its wall time on ``--jobs`` GPUs (default: all visible).

``--device cpu --quick`` is a dry run of every step at toy sizes (well under a minute): figures
only the GPU can give are written as "not measured". Exit status 1 when a measured correctness
check fails or a step raises (its error is recorded in place of its figures).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark scripts

import bench_epoch_vs_dataloader as epochs
import bench_scorers as scorers

NOT_MEASURED = "not measured"
SPEED_MODELS = ("cifar_resnet32", "cifar_vgg19_bn")
SUITE = "su2020_cifar10"
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
# what is compared: (method, scorer options); float32 SynFlow drifts over the rounds from any
# 1e-7 difference (performance.md), float64 shows whether the device's arithmetic itself agrees
AGREEMENT = {
    "snip": ("snip", {}),
    "grasp": ("grasp", {}),
    "synflow": ("synflow", {"precision": "float32"}),
    "synflow_float64": ("synflow", {"precision": "float64"}),
}
GOALS = {"agreement": 0.999, "speedup": 3.0, "masked_dense": 1.03}


def sizes(quick: bool) -> dict[str, Any]:
    """How much each step measures: full (about 10 minutes on one GPU) or a dry run."""
    if quick:
        return {
            "epoch_images": 16, "epoch_batch": 16, "repeats": 1, "warmup": False, "workers": 1,
            "step_model": "cifar_resnet20", "step_images": 64, "step_batch": 32,
            "scorer_models": ("cifar_resnet20",), "scorer_repeats": 1, "synflow_rounds": 2,
            "agree_model": "cifar_resnet20", "agree_rounds": 2,
            "sanity_model": "digits_cnn", "sanity_images": 200, "sanity_epochs": 4, "sanity_batch": 20,
            "scale_images": 32, "scale_eval": 32,
        }
    return {
        "epoch_images": 10_000, "epoch_batch": 128, "repeats": 3, "warmup": True, "workers": 2,
        "step_model": "cifar_resnet32", "step_images": 10_000, "step_batch": 128,
        "scorer_models": SPEED_MODELS, "scorer_repeats": 5, "synflow_rounds": 100,
        "agree_model": "cifar_resnet32", "agree_rounds": 100,
        "sanity_model": "cifar_resnet32", "sanity_images": 10_000, "sanity_epochs": 4, "sanity_batch": 128,
        "scale_images": 10_000, "scale_eval": CIFAR_TEST,
    }


# ------------------------------------------------------------------------------ correctness
class Watch:
    """What the trainer actually used: autocast and memory format at the first layer's input,
    and the optimizer's ``fused`` flag at each step (a global optimizer hook while active)."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.autocast: set[bool] = set()
        self.channels_last: set[bool] = set()
        self.fused: set[bool] = set()
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))

        def on_forward(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if module.training:
                x = args[0]
                self.autocast.add(torch.is_autocast_enabled(device.type))
                self.channels_last.add(x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1)

        self._handle = first.register_forward_pre_hook(on_forward)

    @contextlib.contextmanager
    def optimizer(self) -> Iterator[None]:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        def on_step(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.fused.add(bool(opt.defaults.get("fused")))

        handle = register_optimizer_step_pre_hook(on_step)
        try:
            yield
        finally:
            handle.remove()
            self._handle.remove()


def _zeros_hold(model: torch.nn.Module, masks: Any) -> bool:
    params = dict(model.named_parameters())
    return all(bool((params[n].detach()[~m.to(params[n].device)] == 0).all()) for n, m in masks.items())


def accuracy_and_masks(s: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Train dense and 90%-sparse SNIP copies of one net on easy synthetic data; watch what the
    trainer used and whether every pruned weight is still exactly zero."""
    import attrs

    from prunekit.interfaces import TrainConfig
    from prunekit.pipeline import build_model, instantiate, prune, resolve_method

    data = epochs.learnable(s["sanity_images"], test=max(s["sanity_images"] // 5, 100))
    # bf16 autocast is opt-in (the protocol's precision); the check trains the masked net with it
    precision = "bf16" if device.type == "cuda" else "fp32"
    config = TrainConfig(epochs=s["sanity_epochs"], batch_size=s["sanity_batch"], lr=0.05, lr_schedule="cosine")
    trainer = instantiate("trainer", "sgd")
    dense = build_model(s["sanity_model"], data, 0)
    dense_acc = trainer.fit(dense, data, config, seed=0, device=device).final_accuracy
    model = build_model(s["sanity_model"], data, 0)
    masks = prune(model, data, resolve_method("snip"), 0.9, seed=0, device=device).masks
    watch = Watch(model, device)
    with watch.optimizer():
        masked_acc = trainer.fit(model, data, attrs.evolve(config, precision=precision), masks=masks, seed=0, device=device).final_accuracy
    hold = _zeros_hold(model, masks)
    gpu = device.type == "cuda"

    def feature(seen: set[bool]) -> Any:
        return {"active": seen == {True}, "masks_hold": hold} if gpu else NOT_MEASURED

    chance = 1 / data.num_classes
    return {
        "masks_hold": {
            "model": s["sanity_model"],
            "sparsity": 0.9,
            "precision": precision,
            "this_device": hold,
            "bf16_autocast": feature(watch.autocast),
            "channels_last": feature(watch.channels_last),
            "fused_sgd": feature(watch.fused),
        },
        "accuracy_sanity": {
            "model": s["sanity_model"],
            "train_images": s["sanity_images"],
            "epochs": s["sanity_epochs"],
            "chance": chance,
            "dense_accuracy": dense_acc,
            "masked_accuracy": masked_acc,
            "passed": dense_acc >= chance + 0.3 and masked_acc >= chance + 0.3,
        },
    }


def scorer_agreement(s: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Masks of snip, grasp and synflow at 90% sparsity pruned on the CPU and on the device from
    the same initial weights and scoring batch: the fraction of equal positions."""
    if device.type != "cuda":
        return dict.fromkeys(AGREEMENT, NOT_MEASURED) | {"model": s["agree_model"]}
    import attrs

    from prunekit.pipeline import build_model, prune, resolve_method

    data = epochs.synthetic(1000)
    model = build_model(s["agree_model"], data, 0)
    out: dict[str, Any] = {"model": s["agree_model"]}
    for name, (method_name, options) in AGREEMENT.items():
        method = resolve_method(method_name)
        if method_name == "synflow":
            method = attrs.evolve(method, rounds=s["agree_rounds"], scorer_options=options)
        # the masks are compared, not trained: a layer emptied at 90% is a fair position to compare
        cpu = prune(copy.deepcopy(model), data, method, 0.9, seed=0, device="cpu", allow_collapse=True).masks
        dev = prune(copy.deepcopy(model), data, method, 0.9, seed=0, device=device, allow_collapse=True).masks
        same = sum(int((cpu[n] == dev[n].cpu()).sum()) for n in cpu)
        out[name] = {"agreement": same / cpu.total(), "passed": same / cpu.total() >= GOALS["agreement"]}
    out["conv_fp32_precision"] = str(torch.backends.cudnn.conv.fp32_precision)
    return out


# ------------------------------------------------------------------------------ speed
def epoch_speed(s: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out = {}
    for name in SPEED_MODELS:
        r = epochs.compare_epochs(
            name, s["epoch_images"], s["epoch_batch"], s["repeats"], s["workers"], device, warmup=s["warmup"]
        )
        r["goal"] = f">= {GOALS['speedup']:g}x"
        r["met"] = r["speedup"] >= GOALS["speedup"] if device.type == "cuda" else NOT_MEASURED
        r["peak_memory_mib"] = r["peak_memory_mib"] if r["peak_memory_mib"] is not None else NOT_MEASURED
        out[name] = r
    return out


def step_ratio(s: dict[str, Any], device: torch.device) -> dict[str, Any]:
    r = epochs.masked_dense_step(s["step_model"], s["step_images"], s["step_batch"], s["repeats"], device, s["warmup"])
    r["goal"] = f"<= {GOALS['masked_dense']:g}"
    r["met"] = r["ratio"] <= GOALS["masked_dense"]
    return r


def scorer_cost(s: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Cost of each scorer over its floor (see bench_scorers.py), and, on CUDA, the peak memory
    of pruning with each scorer's recipe."""
    scorers.SYNC = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    out: dict[str, Any] = {}
    for name in s["scorer_models"]:
        rows = scorers.bench_model(name, s["scorer_repeats"], s["synflow_rounds"], max(1, s["scorer_repeats"] // 2), str(device))
        out[name] = {label.strip(): ratio for label, _, _, ratio in rows}
        out[name]["peak_memory_mib"] = _scoring_memory(name, device, s["synflow_rounds"])
    out["targets"] = {k.replace("x100", f"x{s['synflow_rounds']}"): v for k, v in scorers.TARGETS.items()}
    return out


def _scoring_memory(model_name: str, device: torch.device, rounds: int) -> Any:
    if device.type != "cuda":
        return NOT_MEASURED
    import attrs

    from prunekit.pipeline import build_model, prune, resolve_method

    data = epochs.synthetic(1000)
    peaks = {}
    for name in ("snip", "grasp", "synflow"):
        method = resolve_method(name)
        if name == "synflow":
            method = attrs.evolve(method, rounds=min(rounds, 5))
        model = build_model(model_name, data, 0).to(device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        prune(model, data, method, 0.9, seed=0, device=device, allow_collapse=True)
        peaks[name] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        del model
    return peaks


# ------------------------------------------------------------------------------ scale
def scale(s: dict[str, Any], device: torch.device, jobs: int) -> dict[str, Any]:
    """Per-epoch times at the suite's batch size (train images scaled to CIFAR-10's 50,000, plus
    a 10,000-image test pass) and the suite's projected device-hours: each cell's final
    training, one dense pre-training per (model, seed, pruning data) for the ticket methods, and
    the extra retraining rounds of iterative methods. Scoring time is left out."""
    from prunekit.bench.grid import expand
    from prunekit.bench.suite import resolve_suite
    from prunekit.pipeline import build_model, instantiate

    suite = resolve_suite(SUITE)
    per_epoch = {}
    for name in suite.models:
        data = epochs.synthetic(s["scale_images"], test=1)
        seconds, _ = epochs.prunekit_epoch(name, data, None, suite.protocol.batch_size, device)
        eval_data = epochs.synthetic(s["scale_eval"], test=s["scale_eval"])
        model = build_model(name, eval_data, 0).to(device)
        trainer = instantiate("trainer", "sgd")
        epochs._sync(device)
        start = time.perf_counter()
        trainer.evaluate(model, eval_data, device=device)
        epochs._sync(device)
        evaluate = (time.perf_counter() - start) * CIFAR_TEST / s["scale_eval"]
        per_epoch[name] = seconds * CIFAR_TRAIN / s["scale_images"] + evaluate
    grid = expand(suite)
    epochs_by_model = _suite_epochs(grid.cells, suite.protocol.epochs)
    hours = sum(per_epoch[m] * n for m, n in epochs_by_model.items()) / 3600
    gpu = device.type == "cuda"
    return {
        "suite": SUITE,
        "cells": len(grid.cells),
        "epochs_by_model": epochs_by_model,
        "batch_size": suite.protocol.batch_size,
        "seconds_per_epoch": per_epoch,
        "projected_device_hours": hours,
        "projected_gpu_hours": hours if gpu else NOT_MEASURED,
        "jobs": jobs,
        "projected_wall_hours": hours / jobs if gpu else NOT_MEASURED,
    }


def _suite_epochs(cells: Any, epochs_per_run: int) -> dict[str, int]:
    from prunekit.pipeline import resolve_check
    from prunekit.plugins import get_plugins

    methods = get_plugins().registry("method")
    by_model: dict[str, int] = {}
    dense_runs = set()
    for cell in cells:
        method = methods.get(cell.method)
        runs = 1
        if method.pretrain:
            check = resolve_check(cell.check, method)
            data_check = cell.check if check is not None and "pruning_data" in check.stages else "none"
            dense_runs.add((cell.model, cell.seed, data_check))
            if method.prune_fraction > 0:  # iterative: one retraining per intermediate density
                density, d = 1 - cell.sparsity, 1.0
                while d * (1 - method.prune_fraction) > density + 1e-12:
                    d *= 1 - method.prune_fraction
                    runs += 1
        by_model[cell.model] = by_model.get(cell.model, 0) + runs * epochs_per_run
    for model, _, _ in dense_runs:
        by_model[model] += epochs_per_run
    return by_model


# ------------------------------------------------------------------------------ the report
class Report:
    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        from prunekit import __version__

        gpu = device.type == "cuda"
        self.errors: list[str] = []
        self.data: dict[str, Any] = {
            "schema": 1,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "quick": args.quick,
            "environment": {
                "prunekit": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine(),
                "cuda": torch.version.cuda if gpu else NOT_MEASURED,
                "gpu_count": torch.cuda.device_count() if gpu else NOT_MEASURED,
                "cpu_count": os.cpu_count() or 1,
                "torch_threads": torch.get_num_threads(),
            },
            "correctness": {},
            "speed": {},
            "scale": {},
        }

    def step(self, section: str, key: str | None, fn: Callable[[], dict[str, Any]]) -> None:
        """Run one step; its figures go to ``data[section][key]`` (or merge into the section)."""
        start = time.perf_counter()
        print(f"[gpu_check] {section}{'/' + key if key else ''} ...", flush=True)
        try:
            value: dict[str, Any] = fn()
        except Exception as err:  # noqa: BLE001 - one failing step must not lose the others
            frame = traceback.extract_tb(err.__traceback__)[-1]
            text = f"{type(err).__name__}: {err} (at {Path(frame.filename).name}:{frame.lineno})"
            self.errors.append(f"{section}/{key}: {text}")
            value = {"error": text}
        value["seconds"] = round(time.perf_counter() - start, 2)
        if key is None:
            self.data[section].update(value)
        else:
            self.data[section][key] = value

    def failures(self) -> list[str]:
        bad = list(self.errors)
        c = self.data["correctness"]
        if c.get("masks_hold", {}).get("this_device") is False:
            bad.append("pruned weights changed during training")
        for name in ("bf16_autocast", "channels_last", "fused_sgd"):
            v = c.get("masks_hold", {}).get(name)
            if isinstance(v, dict) and not (v["active"] and v["masks_hold"]):
                bad.append(f"{name}: active={v['active']}, masks hold={v['masks_hold']}")
        if c.get("accuracy_sanity", {}).get("passed") is False:
            bad.append("accuracy sanity check failed")
        for name, v in c.get("scorer_agreement", {}).items():
            if isinstance(v, dict) and not v["passed"]:
                bad.append(f"{name} masks agree with the CPU's on {v['agreement']:.6f} < {GOALS['agreement']}")
        return bad

    def write(self, out: Path, wall: float) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        self.data["wall_seconds"] = round(wall, 1)
        self.data["failures"] = self.failures()
        json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
        json_path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        md_path.write_text(markdown(self.data))
        return json_path, md_path


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, dict) and "active" in v:
        return f"active {_fmt(v['active'])}, masks hold {_fmt(v['masks_hold'])}"
    if isinstance(v, dict) and "agreement" in v:
        return f"{v['agreement']:.6f}"
    return str(v)


def markdown(d: dict[str, Any]) -> str:
    env, c, sp, sc = d["environment"], d["correctness"], d["speed"], d["scale"]
    lines = [
        f"# prunekit GPU check — {env['device_name']} ({env['device']})",
        "",
        (
            f"`{d['command']}` · prunekit {env['prunekit']}, torch {env['torch']}, CUDA {env['cuda']}, "
            f"{env['gpu_count']} GPU(s), {env['cpu_count']} CPUs · {d['wall_seconds']} s"
            + (" · **dry run (--quick): toy sizes, figures are not comparable**" if d["quick"] else "")
        ),
        "",
        "## Correctness",
        "",
        "| check | result | goal |",
        "|---|---|---|",
    ]
    mh, acc, ag = c.get("masks_hold", {}), c.get("accuracy_sanity", {}), c.get("scorer_agreement", {})
    for name in ("this_device", "bf16_autocast", "channels_last", "fused_sgd"):
        lines.append(f"| masks hold: {name} | {_fmt(mh.get(name, mh.get('error')))} | exactly zero |")
    for name in AGREEMENT:
        lines.append(f"| {name} masks, CPU vs device ({ag.get('model')}) | {_fmt(ag.get(name, ag.get('error')))} | ≥ {GOALS['agreement']} |")
    lines.append(
        f"| accuracy, dense / 90% SNIP ({acc.get('model')}) | {_fmt(acc.get('dense_accuracy'))} / "
        f"{_fmt(acc.get('masked_accuracy'))} | both ≥ chance + 0.3 |"
    )
    lines += ["", "## Speed", "", "| model | plain s/epoch | prunekit s/epoch | speed-up | img/s | peak MiB | goal |", "|---|---|---|---|---|---|---|"]
    for name, r in sp.get("epoch_vs_dataloader", {}).items():
        if isinstance(r, dict) and "speedup" in r:
            lines.append(
                f"| {name} | {_fmt(r['plain_s_per_epoch'])} | {_fmt(r['prunekit_s_per_epoch'])} | "
                f"{_fmt(r['speedup'])}× | {_fmt(r['images_per_s'])} | {_fmt(r['peak_memory_mib'])} | {r['goal']} |"
            )
    st = sp.get("masked_dense_step", {})
    if "ratio" in st:
        lines += [
            "",
            (
                f"Masked/dense step ({st['model']}, batch {st['batch_size']}): {_fmt(st['dense_ms'])} ms dense, "
                f"{_fmt(st['masked_ms'])} ms masked, ratio **{_fmt(st['ratio'], 4)}** (goal {st['goal']})."
            ),
        ]
    cost = sp.get("scorer_cost", {})
    lines += ["", "Scorer cost over its floor (bench_scorers.py):", "", "| model | ratios | peak MiB of pruning |", "|---|---|---|"]
    for name, r in cost.items():
        if name in ("targets", "seconds", "error"):
            continue
        ratios = ", ".join(f"{k} {_fmt(v)}" for k, v in r.items() if k != "peak_memory_mib")
        lines.append(f"| {name} | {ratios} | {_fmt(r.get('peak_memory_mib'))} |")
    lines += [
        "",
        "## Scale",
        "",
        (
            f"{sc.get('suite')}: {sc.get('cells')} cells, epochs by model {sc.get('epochs_by_model')}, "
            f"seconds per epoch {({k: round(v, 1) for k, v in sc.get('seconds_per_epoch', {}).items()})}."
        ),
        (
            f"Projected GPU-hours: **{_fmt(sc.get('projected_gpu_hours'))}**; wall hours on {sc.get('jobs')} GPU(s) "
            f"(--jobs): **{_fmt(sc.get('projected_wall_hours'))}**."
        ),
        "",
    ]
    if d["failures"]:
        lines += ["## Failures", ""] + [f"- {f}" for f in d["failures"]] + [""]
    errors = [f"{s}/{k}: {v['error']}" for s in ("correctness", "speed", "scale") for k, v in d[s].items() if isinstance(v, dict) and "error" in v]
    if "error" in d["scale"]:
        errors.append(f"scale: {d['scale']['error']}")
    return "\n".join(lines + ([f"Errors: {e}" for e in errors] if errors else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Writes gpu_check.json and gpu_check.md into --out.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda (default when visible) or cpu")
    parser.add_argument("--quick", action="store_true", help="dry run at toy sizes (every step, well under a minute on a CPU)")
    parser.add_argument("--out", default="gpu-check", help="folder for gpu_check.json and gpu_check.md (default: gpu-check)")
    parser.add_argument("--jobs", type=int, default=None, help="GPUs for the projected wall time (default: all visible)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; run with --device cpu for a dry run", file=sys.stderr)
        return 2
    jobs = args.jobs or (torch.cuda.device_count() if device.type == "cuda" else 1)
    if jobs < 1:
        print(f"gpu_check: --jobs must be at least 1, got {jobs}", file=sys.stderr)
        return 2
    from prunekit.plugins import get_plugins

    get_plugins()
    s = sizes(args.quick)
    report = Report(args, device)
    started = time.perf_counter()

    def correctness() -> dict[str, Any]:
        return accuracy_and_masks(s, device)

    steps: list[tuple[str, str | None, Callable[[], dict[str, Any]]]] = [
        ("correctness", None, correctness),
        ("correctness", "scorer_agreement", lambda: scorer_agreement(s, device)),
        ("speed", "epoch_vs_dataloader", lambda: epoch_speed(s, device)),
        ("speed", "masked_dense_step", lambda: step_ratio(s, device)),
        ("speed", "scorer_cost", lambda: scorer_cost(s, device)),
        ("scale", None, lambda: scale(s, device, jobs)),
    ]
    for section, key, fn in steps:
        report.step(section, key, fn)
        # written after every step: a run stopped part-way keeps the figures it has
        json_path, md_path = report.write(Path(args.out), time.perf_counter() - started)
    failures = report.data["failures"]
    print(f"[gpu_check] wrote {json_path} and {md_path}" + (f"; {len(failures)} failure(s):" if failures else ""))
    for f in failures:
        print(f"  - {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
