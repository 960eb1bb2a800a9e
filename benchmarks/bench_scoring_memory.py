"""Peak memory of scoring with each method, relative to the model's own size.

Each method scores one model on CIFAR-shaped synthetic data in a fresh process. On CUDA the
figure is ``torch.cuda.max_memory_allocated`` during scoring; on the CPU it is the growth of the
process's peak resident set (ru_maxrss) during scoring. Printed as MiB and as a multiple of the
model's parameter bytes.

    python benchmarks/bench_scoring_memory.py --model cifar_resnet32 [--methods snip,grasp,synflow]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, torch
from prunekit.pipeline import build_model, prune, resolve_method, load_dataset
from prunekit.plugins import get_plugins
model_name, method_name, device = sys.argv[1], sys.argv[2], sys.argv[3]
get_plugins()
data = load_dataset("synthetic")
model = build_model(model_name, data, 0).to(device)
method = resolve_method(method_name)
if method.rounds > 1:
    import attrs; method = attrs.evolve(method, rounds=5)
param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
if device.startswith("cuda"):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
prune(model, data, method, 0.9, seed=0, device=device, allow_collapse=True)
if device.startswith("cuda"):
    peak = torch.cuda.max_memory_allocated() - base
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps({"peak": peak, "params": param_bytes}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet32")
    parser.add_argument("--methods", default="magnitude_at_init,random_uniform,snip,grasp,synflow")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{args.model} on synthetic 3x32x32, device {device} (synflow: 5 rounds)")
    print(f"{'method':20s} {'peak MiB':>10s} {'x params':>9s}")
    for method in args.methods.split(","):
        out = subprocess.run([sys.executable, "-c", CHILD, args.model, method, device],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{method:20s} failed: {out.stderr.strip().splitlines()[-1] if out.stderr else '?'}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{method:20s} {r['peak'] / 2**20:10.1f} {r['peak'] / r['params']:9.2f}")


if __name__ == "__main__":
    main()
