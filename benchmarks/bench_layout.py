"""The sgd trainer's layout on the CPU: a dense fit of a model in channels_last (what the trainer
does) against the same fit in the default contiguous layout, runs interleaved, and the ratio.

    python benchmarks/bench_layout.py [--model digits_cnn] [--epochs 4] [--repeats 4]

The two fits start from the same initialisation and seed; their accuracies are printed beside
the times (equal up to float summation order).
"""

from __future__ import annotations

import argparse
import time

import attrs
import timm
import torch

from prunekit.bench.suite import resolve_suite
from prunekit.pipeline import instantiate
from prunekit_plugins.sgd import SGDTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_cnn")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    data = instantiate("dataset", args.dataset).load(None)
    config = attrs.evolve(resolve_suite("quick").protocol, epochs=args.epochs)  # the quick suite's protocol

    def fit(channels_last: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        model = timm.create_model(
            args.model, num_classes=data.num_classes, in_chans=data.input_shape[0]
        )
        started = time.perf_counter()
        result = SGDTrainer(channels_last=channels_last).fit(model, data, config, seed=0)
        return time.perf_counter() - started, result.final_accuracy

    totals = {False: 0.0, True: 0.0}
    for repeat in range(args.repeats + 1):
        for channels_last in (False, True):
            seconds, accuracy = fit(channels_last)
            if repeat:  # the first round warms up
                totals[channels_last] += seconds
            label = "channels_last" if channels_last else "contiguous"
            print(f"round {repeat}: {label:13s} {seconds:.2f} s, final accuracy {accuracy:.4f}")
    print(
        f"mean fit: contiguous {totals[False] / args.repeats:.2f} s, channels_last "
        f"{totals[True] / args.repeats:.2f} s; speed-up {totals[False] / totals[True]:.2f}x"
    )


if __name__ == "__main__":
    main()
