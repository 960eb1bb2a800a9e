"""Seeds per second: the batched trainer (``fit_many``) against one ``SGDTrainer.fit`` at a time.

Trains ``--members`` seeds of one cell (digits_cnn with the quick suite's model options and
protocol: pool_after 1, 4 epochs, batch 64, cosine, lr 0.05; each seed with its own 90 % magnitude masks) both ways, alternating
the two for ``--repeats`` rounds, and prints the best time of each, seeds per second and the
ratio. Only training is timed (models and masks are built before the clock starts). The CPU's
load average is printed before and after: on a shared machine the figures move with it.

Then the bound on any batching: the one-at-a-time loop's arithmetic rate (the multiply-adds of
one training, counted by ``torch.utils.flop_counter``, times seeds per second) against a large
matrix product's on the same threads. Stacking seeds removes per-operation overhead, never
arithmetic, so it can speed the loop up by at most the ratio of the two rates.

    python benchmarks/bench_batched_seeds.py [--members 8] [--model digits_cnn] [--width W]
        [--engine auto|wide|vmap] [--threads N] [--epochs 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import attrs
import torch
from torch import nn

from prunekit.bench.suite import resolve_suite
from prunekit.data import DataBundle
from prunekit.interfaces import TrainConfig
from prunekit.masks import Masks
from prunekit.pipeline import build_model, load_dataset
from prunekit_plugins.batched import fit_many
from prunekit_plugins.sgd import SGDTrainer


def magnitude_masks(model: nn.Module, keep: float = 0.1) -> Masks:
    weights = {n: p.detach() for n, p in model.named_parameters() if p.dim() > 1}
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    threshold = flat.kthvalue(int(len(flat) * (1 - keep))).values
    return Masks({n: w.abs() > threshold for n, w in weights.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--model", default="digits_cnn")
    parser.add_argument(
        "--width", type=int, default=None, help="digits_cnn's width (default: the model's, 32)"
    )
    parser.add_argument("--engine", default="auto", choices=("auto", "wide", "vmap"))
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("digits", None)
    quick = resolve_suite("quick")
    config = attrs.evolve(quick.protocol, epochs=args.epochs)  # the quick suite's protocol
    options = dict(quick.options_for_model(args.model)) | ({"width": args.width} if args.width else {})
    seeds = list(range(args.members))
    base = [build_model(args.model, data, s, options=options) for s in seeds]
    masks = [magnitude_masks(m) for m in base]
    print(
        f"{args.model} {options or ''}, {args.members} seeds, "
        f"{args.epochs} epochs of {len(data.train)} images, engine {args.engine}, "
        f"{torch.get_num_threads()} torch threads; load average before: {os.getloadavg()[0]:.1f}"
    )
    solo_times, batch_times = [], []
    for _ in range(args.repeats):
        models = [copy.deepcopy(m) for m in base]
        start = time.perf_counter()
        for model, mask, seed in zip(models, masks, seeds):
            SGDTrainer().fit(model, data, config, masks=mask, seed=seed)
        solo_times.append(time.perf_counter() - start)
        models = [copy.deepcopy(m) for m in base]
        start = time.perf_counter()
        fit_many(models, data, config, masks=masks, seeds=seeds, engine=args.engine)
        batch_times.append(time.perf_counter() - start)
    solo, batched = min(solo_times), min(batch_times)
    print(
        f"one at a time: {solo:7.2f} s  = {args.members / solo:6.2f} seeds/s  (runs: {', '.join(f'{t:.2f}' for t in solo_times)})"
    )
    print(
        f"batched:       {batched:7.2f} s  = {args.members / batched:6.2f} seeds/s  (runs: {', '.join(f'{t:.2f}' for t in batch_times)})"
    )
    print(
        f"speed-up {solo / batched:.2f}x (target >= 4x); load average after: {os.getloadavg()[0]:.1f}"
    )
    flops = training_flops(copy.deepcopy(base[0]), data, config, masks[0])
    loop = args.members * flops / solo / 1e9
    peak = matmul_gflops()
    print(
        f"arithmetic: one training = {flops / 1e9:.2f} GFLOP; the one-at-a-time loop runs {loop:.1f} GFLOP/s, "
        f"a 1024x1024 matrix product {peak:.1f} GFLOP/s on the same threads ({loop / peak:.0%}): "
        f"batching can speed the loop up by at most {peak / loop:.1f}x here"
    )


def training_flops(model: nn.Module, data: DataBundle, config: TrainConfig, masks: Masks) -> float:
    """Floating-point operations of one training (forward, backward and test evaluations)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        SGDTrainer().fit(model, data, config, masks=masks, seed=0)
    return float(counter.get_total_flops())


def matmul_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """The best rate of an n x n float32 matrix product over about ``seconds``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


if __name__ == "__main__":
    main()
