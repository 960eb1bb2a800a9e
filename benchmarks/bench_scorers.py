"""Cost of the pruning-at-initialization scorers relative to their floor.

For each model, on CIFAR-shaped synthetic data (random 3×32×32 inputs, 10 classes, the
100-sample class-balanced scoring batch of SNIP / GraSP):

* ``snip``  — time of one SNIP scoring ÷ one forward+backward of the scoring batch (the floor:
  SNIP needs exactly one of each);
* ``grasp`` — time of one GraSP scoring ÷ the same forward+backward;
* ``synflow x100`` — 100 SynFlow scorings (the default, ``precision="float32"``, rescaled at
  the cuts) with the masks applied before each (the pipeline's iterative loop without its
  selection step) ÷ 100 batch-1 forward+backward passes of the model in float32: its floor;
* ``synflow f64 x100`` — the same with ``precision="float64"`` ÷ the float32 floor, and on the
  next line ÷ 100 float64 batch-1 forward+backward passes (the floor of a float64 pass);
* ``select/round`` — the pipeline's per-round selection (global threshold + top-k inside every
  layer), which the iterative loop adds on top of the scorer, ÷ one batch-1 forward+backward.

Timings are medians over ``--repeats`` measurements taken alternately with their baseline
(after one warm-up), with torch's default thread count.

Then, for ``--agreement-models`` (default cifar_vgg19_bn, cifar_resnet32, cifar_resnet56), the
masks of the ``synflow`` method (100 rounds, global threshold) at ``--agreement-sparsity`` with
float32 and with float64 scoring, from the same initial weights: the fraction of positions where
they agree (goal ≥ 0.999) and the time of each pruning. Run::

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
AGREEMENT_GOAL = 0.999


CLOCK: Callable[[], float] = time.perf_counter


def SYNC() -> None:  # rebound to torch.cuda.synchronize on a GPU
    """Wait for the device (nothing to wait for on the CPU)."""


def _time(fn: Callable[[], object]) -> float:
    SYNC()
    start = CLOCK()
    fn()
    SYNC()
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


def _context(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor] | None, device: torch.device):  # type: ignore[no-untyped-def]
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
        device=device,
    )


def bench_model(
    name: str, repeats: int, rounds: int, syn_repeats: int, device: str = "cpu"
) -> list[tuple[str, float, float, float]]:
    """Rows ``(label, seconds, floor seconds, ratio)`` of one model (see the module doc)."""
    import timm

    from prunekit.plugins import get_plugins
    from prunekit.selection import select_top
    from prunekit_plugins.grasp import Grasp
    from prunekit_plugins.schedules import Global
    from prunekit_plugins.snip import Snip
    from prunekit_plugins.synflow import SynFlow

    get_plugins()
    dev = torch.device(device)
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).to(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 3, 32, 32, generator=g).to(dev)
    y = torch.arange(10).repeat_interleave(10).to(dev)
    ctx = _context(model, (x, y), dev)

    def forward_backward() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    rows = []
    for scorer in (Snip(), Grasp()):
        t, base = _paired(lambda s=scorer: s.score(model, ctx), forward_backward, repeats)  # type: ignore[misc]
        rows.append((scorer.name, t, base, t / base))
    model.zero_grad(set_to_none=True)

    ones = torch.ones(1, 3, 32, 32, device=dev)
    synflow, synflow64 = SynFlow(), SynFlow(precision="float64")
    syn_ctx = _context(model, None, dev)
    model64 = copy.deepcopy(model).double()

    def batch1(net: nn.Module, dtype: torch.dtype) -> Callable[[], None]:
        def run() -> None:
            net.eval()
            for _ in range(rounds):
                net.zero_grad(set_to_none=True)
                net(ones.to(dtype)).sum().backward()

        return run

    def synflow_rounds(scorer: SynFlow) -> Callable[[], None]:
        def run() -> None:
            for _ in range(rounds):
                syn_ctx.masks.apply(model)
                scorer.score(model, syn_ctx)

        return run

    t, base = _paired(synflow_rounds(synflow), batch1(model, torch.float32), syn_repeats)
    rows.append((f"synflow x{rounds}", t, base, t / base))
    t64, base32 = _paired(synflow_rounds(synflow64), batch1(model, torch.float32), syn_repeats)
    rows.append((f"synflow f64 x{rounds}", t64, base32, t64 / base32))
    t64, base64 = _paired(synflow_rounds(synflow64), batch1(model64, torch.float64), syn_repeats)
    rows.append((f"  f64 vs f64 fwd+bwd x{rounds}", t64, base64, t64 / base64))
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


def synflow_agreement(name: str, sparsity: float, rounds: int = 100, seed: int = 0) -> tuple[float, float, float]:
    """(fraction of equal mask positions, seconds float32, seconds float64) of the ``synflow``
    recipe pruned from the same initial weights with each precision."""
    import attrs

    from prunekit.pipeline import build_model, prune, resolve_method

    data = _shaped_data()
    method = resolve_method("synflow")
    masks, seconds = [], []
    for precision in ("float32", "float64"):
        recipe = attrs.evolve(method, rounds=rounds, scorer_options={"precision": precision})
        model = build_model(name, data, seed)
        start = time.perf_counter()
        masks.append(prune(model, data, recipe, sparsity, seed=seed, allow_collapse=True).masks)
        seconds.append(time.perf_counter() - start)
    same = sum(int((masks[0][n] == masks[1][n]).sum()) for n in masks[0])
    return same / masks[0].total(), seconds[0], seconds[1]


def synflow_lockstep(name: str, sparsity: float, rounds: int = 100, seed: int = 0) -> tuple[float, int]:
    """Round by round along the float64 path: (lowest fraction of positions where the float32
    and float64 scores select the same global top-k in one round, positions that differed
    over all rounds). Free of the cascade that makes whole runs drift apart after one swap."""
    from prunekit.pipeline import build_model
    from prunekit_plugins.synflow import SynFlow

    model = build_model(name, _shaped_data(), seed)
    ctx = _context(model, None, torch.device("cpu"))
    masks = {n: m.clone() for n, m in ctx.masks.items()}
    total = sum(m.numel() for m in masks.values())
    worst, differed = 1.0, 0
    for r in range(1, rounds + 1):
        for n, p in model.named_parameters():
            if n in masks:
                p.data.mul_(masks[n])
        s32 = SynFlow(precision="float32").score(model, ctx)
        s64 = SynFlow(precision="float64").score(model, ctx)
        k = round(total * (1 - sparsity) ** (r / rounds))
        keep32, keep64 = _top(s32, masks, k), _top(s64, masks, k)
        diff = int((keep32 != keep64).sum())
        worst, differed = min(worst, 1 - diff / total), differed + diff
        start = 0
        for n, m in masks.items():
            masks[n] = keep64[start : start + m.numel()].view_as(m)
            start += m.numel()
    return worst, differed


def _top(scores: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    flat = torch.cat([torch.where(masks[n], scores[n].double(), -1.0).flatten() for n in scores])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, k).indices] = True
    return keep


def _shaped_data():  # type: ignore[no-untyped-def]
    """A CIFAR-shaped bundle (SynFlow reads only its input shape and class count)."""
    from prunekit.data import ArrayData, DataBundle

    x = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
    split = ArrayData(x=x, y=torch.arange(10))
    return DataBundle(name="synthetic", train=split, test=split, num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cifar_vgg19_bn", "cifar_resnet32"])
    parser.add_argument("--repeats", type=int, default=5, help="measurements per scorer (median)")
    parser.add_argument("--rounds", type=int, default=100, help="SynFlow rounds")
    parser.add_argument("--synflow-repeats", type=int, default=3, help="measurements of the SynFlow loop")
    parser.add_argument(
        "--agreement-models",
        nargs="*",
        default=["cifar_vgg19_bn", "cifar_resnet32", "cifar_resnet56"],
        help="models whose float32 and float64 SynFlow masks are compared (none: skip)",
    )
    parser.add_argument("--agreement-sparsity", type=float, default=0.98)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    global CLOCK, SYNC
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    if args.device.startswith("cuda"):
        SYNC = torch.cuda.synchronize
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}, {args.clock} clock")
    print(f"{'model':<16} {'scorer':<24} {'time s':>9} {'floor s':>9} {'ratio':>7} {'target':>7}")
    for name in args.models:
        for label, t, base, ratio in bench_model(name, args.repeats, args.rounds, args.synflow_repeats, args.device):
            target = TARGETS.get(label.replace(f"x{args.rounds}", "x100"))
            flag = "" if target is None else ("ok" if ratio <= target else "MISSED")
            tgt = f"≤{target:g}" if target is not None else ""
            print(f"{name:<16} {label:<24} {t:9.3f} {base:9.3f} {ratio:7.2f} {tgt:>7} {flag}", flush=True)
    if args.agreement_models:
        print(f"\nsynflow float32 vs float64 masks, {args.rounds} rounds, sparsity {args.agreement_sparsity:g} (goal ≥ {AGREEMENT_GOAL})")
        print(f"{'model':<16} {'per round':>10} {'differed':>9} {'whole run':>10} {'f32 s':>8} {'f64 s':>8}")
    for name in args.agreement_models:
        worst, differed = synflow_lockstep(name, args.agreement_sparsity, args.rounds)
        agree, t32, t64 = synflow_agreement(name, args.agreement_sparsity, args.rounds)
        print(f"{name:<16} {worst:10.6f} {differed:9d} {agree:10.6f} {t32:8.1f} {t64:8.1f}", flush=True)


if __name__ == "__main__":
    main()
