"""Datasets as tensors in memory, class-balanced scoring batches, deterministic splits.

A public module: dataset, trainer, check and instrument plugins use its helpers (``__all__``).

Every dataset plugin returns a :class:`DataBundle`: train and test :class:`ArrayData` holding
images as ``uint8`` tensors of shape (N, C, H, W) with values 0..255 and integer labels, plus
the per-channel normalisation and the training augmentation. Batches are normalised (and, for
training, augmented) on the fly in batched tensor ops, on whatever device the data lives on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import attrs
import torch

from prunekit.errors import PrunekitError

if TYPE_CHECKING:
    from prunekit.interfaces import DataRequest


@attrs.frozen(kw_only=True, eq=False)
class ArrayData:
    """Images (N, C, H, W) uint8 and labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __attrs_post_init__(self) -> None:
        if self.x.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.x.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} images but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: torch.Tensor) -> ArrayData:
        return ArrayData(x=self.x[index], y=self.y[index])

    def to(self, device: torch.device | str) -> ArrayData:
        return ArrayData(x=self.x.to(device), y=self.y.to(device))


@attrs.frozen(kw_only=True)
class Augment:
    """Training augmentation: random crop after zero padding, random horizontal flip."""

    crop_padding: int = 0
    hflip: bool = False


@attrs.frozen(kw_only=True, eq=False)
class DataBundle:
    """A loaded dataset: splits, classes, normalisation and training augmentation."""

    name: str
    train: ArrayData
    test: ArrayData
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment = Augment()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.x.shape[1:]
        return int(c), int(h), int(w)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32 normalised, on x's device."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float().div_(255.0) - mean) / std

    def with_train(self, train: ArrayData) -> DataBundle:
        return attrs.evolve(self, train=train)

    def to(self, device: torch.device | str) -> DataBundle:
        return attrs.evolve(self, train=self.train.to(device), test=self.test.to(device))


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units."""
    xf = x.float().div(255.0)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def augment_batch(x: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding ``crop_padding``) and horizontal flip of a uint8 batch.

    Crop offsets are uniform over 0..2·pad in each axis and each image flips with probability
    0.5, drawn from ``generator`` (on the CPU, so results do not depend on the device).
    """
    if not augment.crop_padding and not augment.hflip:
        return x
    n, c, h, w = x.shape
    pad = augment.crop_padding
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (oy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)).view(n, 1, h, 1)
        cols = (ox.view(n, 1) + torch.arange(w, device=x.device).view(1, w)).view(n, 1, 1, w)
        padded = padded.gather(2, rows.expand(n, c, h, w + 2 * pad))
        x = padded.gather(3, cols.expand(n, c, h, w))
    if augment.hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


def iterate_batches(
    data: ArrayData, batch_size: int, generator: torch.Generator, *, shuffle: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Raw (uint8) batches in a seeded random order; the last short batch is kept."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order.to(data.x.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield data.x[idx], data.y[idx]


def balanced_indices(
    labels: torch.Tensor, per_class: int, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Indices of ``per_class`` samples of every class, drawn without replacement.

    Ordered class by class (class 0 first). Raises when a class has too few samples.
    """
    labels = labels.cpu()
    chosen = []
    for c in range(num_classes):
        pool = torch.nonzero(labels == c, as_tuple=False).flatten()
        if pool.numel() < per_class:
            raise PrunekitError(
                f"class {c} has {pool.numel()} samples but the scoring batch needs {per_class} "
                "per class; lower samples_per_class or use more data"
            )
        pick = torch.randperm(pool.numel(), generator=generator)[:per_class]
        chosen.append(pool[pick])
    return torch.cat(chosen)


def stratified_split(
    labels: torch.Tensor, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (first, rest) with ``fraction`` of every class in ``first``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    labels = labels.cpu()
    first, rest = [], []
    for c in torch.unique(labels).tolist():
        pool = torch.nonzero(labels == c, as_tuple=False).flatten()
        perm = pool[torch.randperm(pool.numel(), generator=generator)]
        k = round(fraction * pool.numel())
        first.append(perm[:k])
        rest.append(perm[k:])
    return torch.sort(torch.cat(first)).values, torch.sort(torch.cat(rest)).values


def make_generator(seed: int, *salt: object) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and a salt, so independent streams do not collide."""
    import hashlib

    digest = hashlib.sha256(repr((seed, *salt)).encode()).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


def scoring_batches(
    data: DataBundle,
    request: DataRequest | None,
    seed: int,
    device: torch.device,
    train: ArrayData | None = None,
    *,
    augment: bool = False,
) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """``request.iterations`` class-balanced batches from the (possibly perturbed) train split.

    With ``augment`` (a method's ``scoring_augment``) every batch goes through the data's
    training augmentation (random crop and flip) before normalisation, as a batch taken from the
    authors' augmented training loader is; the draws come from their own seeded stream, so the
    same images are chosen with and without it.
    """
    if request is None:
        return ()
    train = train if train is not None else data.train
    g = make_generator(seed, "scoring-batch")
    flips = make_generator(seed, "scoring-augment") if augment else None
    out = []
    for _ in range(request.iterations):
        idx = balanced_indices(train.y, request.samples_per_class, data.num_classes, g)
        images = train.x[idx.to(train.x.device)].to(device)
        if flips is not None:
            images = augment_batch(images, data.augment, flips)
        out.append((data.normalize(images), train.y[idx.to(train.y.device)].to(device)))
    return tuple(out)


__all__ = [
    "ArrayData",
    "Augment",
    "DataBundle",
    "augment_batch",
    "balanced_indices",
    "channel_stats",
    "iterate_batches",
    "make_generator",
    "scoring_batches",
    "stratified_split",
]
