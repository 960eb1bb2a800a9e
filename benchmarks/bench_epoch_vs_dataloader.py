"""Epoch time of prunekit's training loop vs a plain torchvision DataLoader loop, and images/s.

Both loops train the same model on the same CIFAR-shaped data with the same protocol (SGD
momentum 0.9, weight decay, random crop 32 with padding 4, horizontal flip, normalisation):

* plain: a torchvision ``Dataset`` applying ``transforms`` per image (PIL), a ``DataLoader``
  with worker processes, the reference code's per-parameter masking of gradients and weights;
* prunekit: the ``sgd`` trainer — whole split as uint8 tensors on the device, batched
  augmentation, foreach/fused optimizer, one foreach mask multiply after the step, bf16 autocast
  and channels_last on CUDA.

Prints seconds per epoch for each, the speed-up (plain / prunekit) and prunekit's images/s.

    python benchmarks/bench_epoch_vs_dataloader.py --model cifar_resnet32 --images 2048 --batch-size 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image
from torch.nn import functional as F

from prunekit.data import ArrayData, Augment, DataBundle
from prunekit.interfaces import Method, TrainConfig
from prunekit.pipeline import build_model, instantiate, prune

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def synthetic(n: int, seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    split = ArrayData(x=x, y=y)
    small = ArrayData(x=x[:256], y=y[:256])
    return DataBundle(name="synthetic", train=split, test=small, num_classes=10, mean=MEAN, std=STD,
                      augment=Augment(crop_padding=4, hflip=True))


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
    data = synthetic(args.images)
    method = Method(name="random_uniform", description="", family="random", scorer="random", schedule="uniform")
    masks = prune(build_model(args.model, data, 0), data, method, 0.9, seed=0).masks
    trainer = instantiate("trainer", "sgd")
    config = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.1)

    def ours() -> float:
        model = build_model(args.model, data, 0)
        masks.apply(model)
        model.to(device)
        start = time.perf_counter()
        trainer.fit(model, data, config, masks=masks, seed=0, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def theirs() -> float:
        model = build_model(args.model, data, 0).to(device)
        dev_masks = {n: m.to(device=device, dtype=torch.float32) for n, m in masks.items()}
        return plain_epoch(model, data, dev_masks, args.batch_size, device, args.workers)

    ours(), theirs()  # warm-up
    mine, plain = [], []
    for _ in range(args.repeats):
        mine.append(ours())
        plain.append(theirs())
    m, p = statistics.median(mine), statistics.median(plain)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"{args.model}, {args.images} images/epoch, batch {args.batch_size}, 90% sparse, {name}")
    print(f"plain DataLoader loop  {p:8.3f} s/epoch  ({args.images / p:8.1f} img/s)")
    print(f"prunekit sgd trainer   {m:8.3f} s/epoch  ({args.images / m:8.1f} img/s, incl. one test pass of 256)")
    print(f"speed-up plain / prunekit = {p / m:.2f}x  (GPU target >= 3x for cifar_resnet32 at batch 128)")


if __name__ == "__main__":
    main()
