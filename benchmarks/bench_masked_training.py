"""Step time of masked vs dense training of the same model, same data, same steps.

Runs the ``sgd`` trainer on the same model and data twice per repeat, once dense and once with
a 90%-sparse random mask (enforced after every step), alternating the order, and prints the
median ratio masked / dense. Target: <= 1.05 on CPU.

    python benchmarks/bench_masked_training.py [--model digits_cnn --dataset digits] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prunekit.interfaces import Method, TrainConfig
from prunekit.pipeline import build_model, instantiate, load_dataset, prune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_cnn")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.05, lr_schedule="cosine")
    trainer = instantiate("trainer", "sgd")
    method = Method(name="random_uniform", description="", family="random", scorer="random", schedule="uniform")
    masks = prune(build_model(args.model, data, 0), data, method, args.sparsity, seed=0).masks

    def timed(masked: bool) -> float:
        model = build_model(args.model, data, 0)
        if masked:
            masks.apply(model)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = trainer.fit(model, data, config, masks=masks if masked else None, seed=0, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / result.steps

    timed(False), timed(True)  # warm-up
    dense, masked = [], []
    for r in range(args.repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        for is_masked in order:
            (masked if is_masked else dense).append(timed(is_masked))
    d, m = statistics.median(dense), statistics.median(masked)
    print(f"device {args.device}, model {args.model}, dataset {args.dataset}, sparsity {args.sparsity}, threads {torch.get_num_threads()}")
    print(f"dense  step {d * 1e3:8.3f} ms (median of {args.repeats})")
    print(f"masked step {m * 1e3:8.3f} ms (median of {args.repeats})")
    print(f"masked / dense = {m / d:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
