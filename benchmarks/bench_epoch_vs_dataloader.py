"""Epoch time of prunekit's training loop vs a plain torchvision DataLoader loop, and images/s.

Both loops train the same model on the same CIFAR-shaped data with the same protocol (SGD
momentum 0.9, weight decay, random crop 32 with padding 4, horizontal flip, normalisation):

* plain: a torchvision ``Dataset`` applying ``transforms`` per image (PIL), a ``DataLoader``
  with worker processes, the reference code's per-parameter masking of gradients and weights;
* prunekit: the ``sgd`` trainer — whole split as uint8 tensors on the device, batched
  augmentation, foreach/fused optimizer, one foreach mask multiply after the step, bf16 autocast
  and channels_last on CUDA.

Prints seconds per epoch for each, the speed-up (plain / prunekit) and prunekit's images/s.
The functions here are shared with ``gpu_check.py`` (:func:`compare_epochs`,
:func:`masked_dense_step`, :func:`synthetic`, :func:`learnable`).

    python benchmarks/bench_epoch_vs_dataloader.py --model cifar_resnet32 --images 2048 --batch-size 128
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torch.nn import functional as F

from prunekit.data import ArrayData, Augment, DataBundle
from prunekit.interfaces import Method, TrainConfig
from prunekit.masks import Masks
from prunekit.pipeline import build_model, instantiate, prune

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
RANDOM = Method(name="random_uniform", description="", family="random", scorer="random", schedule="uniform")


def _bundle(x: torch.Tensor, y: torch.Tensor, test: int) -> DataBundle:
    return DataBundle(
        name="synthetic",
        train=ArrayData(x=x, y=y),
        test=ArrayData(x=x[:test], y=y[:test]),
        num_classes=10,
        mean=MEAN,
        std=STD,
        augment=Augment(crop_padding=4, hflip=True),
    )


def synthetic(n: int, seed: int = 0, test: int = 256) -> DataBundle:
    """``n`` random 3×32×32 uint8 images with random labels (10 classes); the first ``test``
    are also the test split."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return _bundle(x, y, min(test, n))


def learnable(n: int, seed: int = 0, test: int = 512) -> DataBundle:
    """CIFAR-shaped images a net learns in a few dozen steps: each class has its own colour (well
    apart in RGB) and a faint coarse 4×4 pattern, plus noise. The test split is drawn apart."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.tensor([[r, gr, b] for r in (0, 1) for gr in (0, 1) for b in (0, 1)] + [[0.5, 0.5, 0], [0, 0.5, 0.5]])
    colour = (corners * 160 + 48).view(10, 3, 1, 1)
    pattern = F.interpolate(torch.rand(10, 1, 4, 4, generator=g) * 32 - 16, size=32, mode="nearest")

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(count) % 10
        noise = torch.randn(count, 3, 32, 32, generator=g) * 12
        return (colour[y] + pattern[y] + noise).clamp(0, 255).to(torch.uint8), y

    x, y = draw(n)
    tx, ty = draw(test)
    data = _bundle(x, y, 1)
    return DataBundle(
        name="synthetic-learnable", train=data.train, test=ArrayData(x=tx, y=ty), num_classes=10,
        mean=MEAN, std=STD, augment=data.augment,
    )


class PlainDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """What the reference code does: HWC uint8 images through torchvision transforms one by one."""

    def __init__(self, data: ArrayData) -> None:
        import torchvision.transforms as T

        self.images = data.x.permute(0, 2, 3, 1).numpy()
        self.labels = data.y.numpy()
        self.transform = T.Compose([
            T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def plain_epoch(model, data, masks, batch_size, device, workers):  # type: ignore[no-untyped-def]
    loader = torch.utils.data.DataLoader(PlainDataset(data.train), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    params = dict(model.named_parameters())
    model.train()
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for name, mask in masks.items():  # reference: mask gradients, then weights, per parameter
            params[name].grad.mul_(mask)
        opt.step()
        for name, mask in masks.items():
            params[name].data.mul_(mask)
        loss.item()  # the reference loop reads the loss every step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prunekit_epoch(model_name: str, data: DataBundle, masks: Masks | None, batch_size: int, device: torch.device) -> tuple[float, int]:
    """(seconds, steps) of one epoch of the ``sgd`` trainer (one test pass included)."""
    trainer = instantiate("trainer", "sgd")
    model = build_model(model_name, data, 0)
    if masks is not None:
        masks.apply(model)
    model.to(device)
    _sync(device)
    start = time.perf_counter()
    result = trainer.fit(model, data, TrainConfig(epochs=1, batch_size=batch_size, lr=0.1), masks=masks, seed=0, device=device)
    _sync(device)
    return time.perf_counter() - start, result.steps


def random_masks(model_name: str, data: DataBundle, sparsity: float = 0.9) -> Masks:
    return prune(build_model(model_name, data, 0), data, RANDOM, sparsity, seed=0).masks


def _median_pair(first: Callable[[], float], second: Callable[[], float], repeats: int, warmup: bool) -> tuple[float, float]:
    if warmup:
        first(), second()
    a, b = [], []
    for _ in range(repeats):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def compare_epochs(
    model_name: str, images: int, batch_size: int, repeats: int = 3, workers: int = 2,
    device: str | torch.device = "cpu", warmup: bool = True,
) -> dict[str, Any]:
    """prunekit's epoch vs the plain loop on ``images`` synthetic images (90%-sparse random
    mask), medians of ``repeats`` alternated runs; with CUDA, the peak memory of prunekit's."""
    device = torch.device(device)
    data = synthetic(images)
    masks = random_masks(model_name, data)
    peak: list[int] = []

    def ours() -> float:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = prunekit_epoch(model_name, data, masks, batch_size, device)[0]
        if device.type == "cuda":
            peak.append(torch.cuda.max_memory_allocated(device))
        return seconds

    def theirs() -> float:
        model = build_model(model_name, data, 0).to(device)
        dev_masks = {n: m.to(device=device, dtype=torch.float32) for n, m in masks.items()}
        return plain_epoch(model, data, dev_masks, batch_size, device, workers)

    mine, plain = _median_pair(ours, theirs, repeats, warmup)
    return {
        "model": model_name,
        "images": images,
        "batch_size": batch_size,
        "workers": workers,
        "plain_s_per_epoch": plain,
        "prunekit_s_per_epoch": mine,
        "speedup": plain / mine,
        "images_per_s": images / mine,
        "peak_memory_mib": max(peak) / 2**20 if peak else None,
    }


def masked_dense_step(
    model_name: str, images: int, batch_size: int, repeats: int = 3, device: str | torch.device = "cpu",
    warmup: bool = True,
) -> dict[str, Any]:
    """Seconds per step of the ``sgd`` trainer, dense and with a 90%-sparse mask (alternated)."""
    device = torch.device(device)
    data = synthetic(images, test=1)
    masks = random_masks(model_name, data)

    def step(m: Masks | None) -> Callable[[], float]:
        def run() -> float:
            seconds, steps = prunekit_epoch(model_name, data, m, batch_size, device)
            return seconds / steps

        return run

    masked, dense = _median_pair(step(masks), step(None), repeats, warmup)
    return {"model": model_name, "batch_size": batch_size, "dense_ms": dense * 1e3, "masked_ms": masked * 1e3,
            "ratio": masked / dense}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet32")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    r = compare_epochs(args.model, args.images, args.batch_size, args.repeats, args.workers, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"{args.model}, {args.images} images/epoch, batch {args.batch_size}, 90% sparse, {name}")
    p, m = r["plain_s_per_epoch"], r["prunekit_s_per_epoch"]
    print(f"plain DataLoader loop  {p:8.3f} s/epoch  ({args.images / p:8.1f} img/s)")
    print(f"prunekit sgd trainer   {m:8.3f} s/epoch  ({args.images / m:8.1f} img/s, incl. one test pass of 256)")
    print(f"speed-up plain / prunekit = {p / m:.2f}x  (GPU target >= 3x for cifar_resnet32 at batch 128)")


if __name__ == "__main__":
    main()
