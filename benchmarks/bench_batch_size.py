"""Images/s of one prunekit training epoch across batch sizes: where the loop stops being bound
by per-step overhead (kernel launches, Python) and starts being bound by arithmetic.

    python benchmarks/bench_batch_size.py --device cuda

Each (model, batch size) runs one warm-up epoch and then one timed epoch of the ``sgd`` trainer
on ``--images`` synthetic CIFAR-shaped images (one test image), dense. A time per step that
stays flat as the batch grows means the step is overhead-bound.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_epoch_vs_dataloader as epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cifar_resnet32,cifar_vgg19_bn")
    parser.add_argument("--batch-sizes", default="64,128,256,512")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    from prunekit.plugins import get_plugins

    get_plugins()
    device = torch.device(args.device)
    data = epochs.synthetic(args.images, test=1)
    print(f"{'model':<16} {'batch':>5} {'s/epoch':>8} {'img/s':>8} {'ms/step':>8}")
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            epochs.prunekit_epoch(name, data, None, batch, device)  # warm-up: cuDNN picks its kernels
            seconds, steps = epochs.prunekit_epoch(name, data, None, batch, device)
            print(f"{name:<16} {batch:>5} {seconds:>8.3f} {args.images / seconds:>8.0f} {1000 * seconds / steps:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
