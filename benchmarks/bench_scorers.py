"""Cost of the pruning-at-initialization scorers relative to their floor.

For each model, on CIFAR-shaped synthetic data (random 3×32×32 inputs, 10 classes, the
100-sample class-balanced scoring batch of SNIP / GraSP):

* ``snip``  — time of one SNIP scoring ÷ one forward+backward of the scoring batch (the floor:
  SNIP needs exactly one of each);
* ``grasp`` — time of one GraSP scoring ÷ the same forward+backward;
* ``synflow x100`` — 100 SynFlow scorings with the masks applied before each (the pipeline's
  iterative loop without its selection step) ÷ 100 batch-1 forward+backward passes of the
  model in its own dtype (float32); the next line divides by 100 float64 batch-1
  forward+backward passes instead, the floor of what SynFlow computes (float64, by the spec);
* ``select/round`` — the pipeline's per-round selection (global threshold + top-k inside every
  layer), which the iterative loop adds on top of the scorer, ÷ one batch-1 forward+backward.

Timings are medians over ``--repeats`` measurements taken alternately with their baseline
(after one warm-up), with torch's default thread count. Run::

    python benchmarks/bench_scorers.py [--models cifar_vgg19_bn cifar_resnet32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

TARGETS = {"snip": 1.3, "grasp": 4.0, "synflow x100": 1.2}


CLOCK: Callable[[], float] = time.perf_counter


def _time(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def _paired(fn: Callable[[], object], base: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn`` and of ``base``, measured alternately after a warm-up."""
    fn()
    base()
    a, b = [], []
    for _ in range(repeats):
        b.append(_time(base))
        a.append(_time(fn))
    return statistics.median(a), statistics.median(b)


def _context(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None):  # type: ignore[no-untyped-def]
    from prunekit.interfaces import ScoringContext
    from prunekit.layers import prunable_layers
    from prunekit.masks import Masks

    layers = tuple(prunable_layers(model))
    return ScoringContext(
        layers=layers,
        masks=Masks.ones(model, [layer.name for layer in layers]),
        batches=(batch,) if batch is not None else (),
        input_shape=(3, 32, 32),
        num_classes=10,
        seed=0,
        device=torch.device("cpu"),
    )


def bench_model(name: str, repeats: int, rounds: int, syn_repeats: int) -> list[tuple[str, float, float, float]]:
    import timm

    from prunekit.plugins import get_plugins
    from prunekit.selection import select_top
    from prunekit_plugins.grasp import Grasp
    from prunekit_plugins.schedules import Global
    from prunekit_plugins.snip import Snip
    from prunekit_plugins.synflow import SynFlow

    get_plugins()
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, 32, 32, generator=g)
    y = torch.arange(10).repeat_interleave(10)
    ctx = _context(model, (x, y))

    def forward_backward() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    rows = []
    for scorer in (Snip(), Grasp()):
        t, base = _paired(lambda s=scorer: s.score(model, ctx), forward_backward, repeats)  # type: ignore[misc]
        rows.append((scorer.name, t, base, t / base))
    model.zero_grad(set_to_none=True)

    ones = torch.ones(1, 3, 32, 32)
    synflow = SynFlow()
    syn_ctx = _context(model, None)
    model64 = copy.deepcopy(model).double()

    def batch1(net: nn.Module, dtype: torch.dtype) -> Callable[[], None]:
        def run() -> None:
            net.eval()
            for _ in range(rounds):
                net.zero_grad(set_to_none=True)
                net(ones.to(dtype)).sum().backward()

        return run

    def synflow_rounds() -> None:
        for _ in range(rounds):
            syn_ctx.masks.apply(model)
            synflow.score(model, syn_ctx)

    t, base = _paired(synflow_rounds, batch1(model, torch.float32), syn_repeats)
    rows.append((f"synflow x{rounds}", t, base, t / base))
    t64, base64 = _paired(synflow_rounds, batch1(model64, torch.float64), syn_repeats)
    rows.append((f"  vs f64 fwd+bwd x{rounds}", t64, base64, t64 / base64))
    del model64
    model.zero_grad(set_to_none=True)

    scores = synflow.score(model, syn_ctx)
    layers = syn_ctx.layers

    def select() -> None:
        counts = Global().allocate(layers, 0.9, scores)
        select_top(layers, scores, counts)

    per_round = statistics.median(_time(select) for _ in range(max(1, repeats // 2)))
    rows.append(("select/round", per_round, base / rounds, per_round / (base / rounds)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cifar_vgg19_bn", "cifar_resnet32"])
    parser.add_argument("--repeats", type=int, default=5, help="measurements per scorer (median)")
    parser.add_argument("--rounds", type=int, default=100, help="SynFlow rounds")
    parser.add_argument("--synflow-repeats", type=int, default=3, help="measurements of the SynFlow loop")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)",
    )
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, {args.clock} clock")
    print(f"{'model':<16} {'scorer':<24} {'time s':>9} {'floor s':>9} {'ratio':>7} {'target':>7}")
    for name in args.models:
        for label, t, base, ratio in bench_model(name, args.repeats, args.rounds, args.synflow_repeats):
            target = TARGETS.get(label.replace(f"x{args.rounds}", "x100"), None)
            flag = "" if target is None else ("ok" if ratio <= target else "MISSED")
            tgt = f"≤{target:g}" if target is not None else ""
            print(f"{name:<16} {label:<24} {t:9.3f} {base:9.3f} {ratio:7.2f} {tgt:>7} {flag}", flush=True)


if __name__ == "__main__":
    main()
