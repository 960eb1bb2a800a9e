"""Built-in datasets: ``digits`` (the embedded default), ``synthetic``, ``cifar10``,
``cifar100``, ``tiny_imagenet`` and ``imagefolder``.

Every loader returns a :class:`~prunekit.data.DataBundle` with uint8 (N, C, H, W) images and
int64 labels held in memory; nothing is cached on disk and nothing is downloaded unless
``download=True`` (only CIFAR can download, through torchvision). Conventions:

* class indices follow the sorted folder / wnid names (torchvision ``ImageFolder`` order);
* ``cifar10`` / ``cifar100`` normalise by their train split's per-channel mean and std
  (``normalization="dataset"``, the default; CIFAR-10 std 0.2470/0.2435/0.2616). Option
  ``normalization="grasp_code"`` uses the constants of GraSP's and Su et al.'s code (CIFAR-10
  std 0.2023/0.1994/0.2010, CIFAR-100 mean 0.5071/0.4867/0.4408, std 0.2675/0.2565/0.2761),
  ``"imagenet"`` ImageNet's mean/std as OpenLTH does for CIFAR-10 (Frankle et al. 2021). The
  paper suites set their authors' choice; it changes first-layer SNIP/GraSP scores at init;
* ``tiny_imagenet`` uses the normalisation of the Su et al. reference code
  (mean 0.4802/0.4481/0.3975, std 0.2770/0.2691/0.2821, computed on its train split);
  ``digits``, ``synthetic`` and ``imagefolder`` compute mean/std from their train split;
* ``imagefolder`` needs every image to have the same size (no resizing) and converts to RGB
  (``grayscale=True``: one channel); its crop padding is size // 8 (4 for 32×32 images).

Heavy libraries (torchvision, PIL, scikit-learn) are imported inside the loaders, so listing
plugins stays fast.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from prunekit import (
    ArrayData,
    DataBundle,
    DataNotFoundError,
    Dataset,
    PrunekitError,
    TrainConfig,
    hookimpl,
    noop_field,
)
from prunekit.data import Augment, channel_stats, make_generator, stratified_split

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
NO_AUGMENT = Augment()
Stats = tuple[tuple[float, ...], tuple[float, ...]]  # (mean, std) per channel, in [0, 1] units
NORMALIZATIONS: tuple[str, ...] = ("dataset", "grasp_code", "imagenet")
IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _one_of(*values: str) -> Any:
    """A validator whose error is one readable line (attrs' ``in_`` prints the whole field)."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in values:
            raise ValueError(f"{attribute.name!r} must be one of {', '.join(values)}; got {value!r}")

    return check


# ------------------------------------------------------------------------------- helpers
def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _require_root(name: str, root: Path | None, holds: str) -> Path:
    if root is None:
        raise DataNotFoundError(
            f"dataset {name!r} reads files from disk: pass --data-root DIR, "
            f"the folder that holds {holds}"
        )
    return Path(root).expanduser()


def _bundle(
    name: str,
    train: ArrayData,
    test: ArrayData,
    num_classes: int,
    *,
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    augment: Augment = NO_AUGMENT,
) -> DataBundle:
    """A DataBundle; mean/std computed from the train images unless ``stats`` is given."""
    mean, std = stats if stats is not None else channel_stats(train.x)
    return DataBundle(
        name=name,
        train=train,
        test=test,
        num_classes=num_classes,
        mean=mean,
        std=std,
        augment=augment,
    )


def _arrays(images: np.ndarray | torch.Tensor, labels: Sequence[int] | np.ndarray) -> ArrayData:
    """uint8 (N, C, H, W) images and integer labels as ArrayData."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {x.dtype}")
    return ArrayData(x=x.contiguous(), y=torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def _read_images(
    paths: Sequence[str], mode: str, like: tuple[tuple[int, int], str] | None = None
) -> torch.Tensor:
    """Decode image files (PIL, converted to ``mode``: "RGB" or "L") into one uint8
    (N, C, H, W) tensor. Every image must have the size of the first one, or the (H, W) of
    ``like`` = ((H, W), what has that size); otherwise a one-line error names the file."""
    from PIL import Image

    def decode(path: str) -> np.ndarray:
        try:
            with Image.open(path) as image:
                arr = np.asarray(image.convert(mode))
        except OSError as err:  # includes PIL.UnidentifiedImageError
            raise PrunekitError(f"cannot read image {path}: {_one_line(err)}") from None
        return arr.reshape(arr.shape[0], arr.shape[1], -1)

    if not paths:
        raise ValueError("no image files given")
    out = np.empty(0, dtype=np.uint8)
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for i, (path, arr) in enumerate(zip(paths, pool.map(decode, paths), strict=True)):
            h, w, c = arr.shape
            if i == 0:
                out = np.empty((len(paths), c, h, w), dtype=np.uint8)
                like = like or ((h, w), path)
            (want_h, want_w), reference = like
            if (h, w) != (want_h, want_w):
                raise PrunekitError(
                    f"image {path} is {w}x{h} pixels but {reference} is {want_w}x{want_h}; "
                    "all images must have the same size: resize them first"
                )
            out[i] = arr.transpose(2, 0, 1)
    finally:
        pool.shutdown(cancel_futures=True)
    return torch.from_numpy(out)


def _image_samples(
    folder: Path, class_to_idx: dict[str, int], *, allow_empty: bool
) -> list[tuple[str, int]]:
    """(path, class) of every image under ``folder/<class>/`` (torchvision's scan)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    return make_dataset(
        str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=allow_empty
    )


def _load_samples(
    samples: Sequence[tuple[str, int]], mode: str, like: tuple[tuple[int, int], str] | None = None
) -> ArrayData:
    x = _read_images([p for p, _ in samples], mode, like)
    return _arrays(x, [c for _, c in samples])


# ------------------------------------------------------------------------- embedded data
def _fraction(instance: Any, attribute: Any, value: float) -> None:
    if not 0.05 <= value <= 0.95:
        raise ValueError(f"{attribute.name} must lie in [0.05, 0.95], got {value}")


@attrs.frozen(kw_only=True)
class Digits(Dataset):
    """scikit-learn's 8×8 handwritten digits; a fixed stratified train/test split
    (``test_fraction`` of the images, 0.2 by default, held out for testing).

    A larger test split makes each accuracy finer and less noisy (one image of 360 is 0.28
    points, of 899 0.11) at the cost of training images; the quick suite chooses it.
    """

    name: ClassVar[str] = "digits"
    description: ClassVar[str] = (
        "8x8 handwritten digits bundled with scikit-learn (1797 images, 10 classes)"
    )
    needs_root: ClassVar[bool] = False
    test_fraction: float = noop_field(0.2, validator=_fraction)
    default_model: ClassVar[str | None] = "digits_cnn"
    # small data, small net: a short cosine schedule reaches ~98-99% in seconds on a CPU
    default_protocol: ClassVar[TrainConfig | None] = TrainConfig(
        epochs=8, batch_size=64, lr=0.05, weight_decay=5e-4, lr_schedule="cosine"
    )

    def load(self, root: Path | None = None, *, download: bool = False) -> DataBundle:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
        y = torch.from_numpy(digits.target.astype(np.int64))
        # a constant seed: the split never changes between runs or machines
        test_idx, train_idx = stratified_split(
            y, self.test_fraction, make_generator(0, "digits-split")
        )
        # flips and crops change what a digit means, so no augmentation
        return _bundle(
            "digits", _arrays(x[train_idx], y[train_idx]), _arrays(x[test_idx], y[test_idx]), 10
        )


@attrs.frozen(kw_only=True)
class Synthetic(Dataset):
    """Deterministic random images with a learnable signal: every class has its own mean
    image and each sample adds Gaussian pixel noise (``noise``, in 0..255 units)."""

    name: ClassVar[str] = "synthetic"
    description: ClassVar[str] = (
        "seeded random images, one mean pattern per class plus noise (for tests and timings)"
    )
    needs_root: ClassVar[bool] = False

    channels: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    height: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    width: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    num_classes: int = attrs.field(default=10, validator=attrs.validators.ge(2))
    train_size: int = attrs.field(default=1024, validator=attrs.validators.ge(1))
    test_size: int = attrs.field(default=256, validator=attrs.validators.ge(1))
    noise: float = attrs.field(default=64.0, validator=attrs.validators.ge(0))
    seed: int = 0

    def load(self, root: Path | None = None, *, download: bool = False) -> DataBundle:
        shape = (self.channels, self.height, self.width)
        g = make_generator(self.seed, "synthetic", shape, self.num_classes)
        patterns = 127.5 + 48.0 * torch.randn((self.num_classes, *shape), generator=g)

        def split(n: int) -> ArrayData:
            y = (torch.arange(n) % self.num_classes)[torch.randperm(n, generator=g)]
            x = patterns[y] + self.noise * torch.randn((n, *shape), generator=g)
            return _arrays(x.round_().clamp_(0, 255).to(torch.uint8), y)

        train, test = split(self.train_size), split(self.test_size)
        # the signal is pixel-aligned, so no augmentation
        return _bundle("synthetic", train, test, self.num_classes)


# --------------------------------------------------------------------------------- CIFAR
@attrs.frozen(kw_only=True)
class Cifar10(Dataset):
    """CIFAR-10 through torchvision (python pickle batches under ``<root>/cifar-10-batches-py``).

    ``normalization`` picks the per-channel (mean, std) inputs are normalised with:

    * ``dataset`` (default): the train split's mean and per-pixel std (``mean``, ``std``);
    * ``grasp_code``: the constants of GraSP's ``utils/data_utils.py``, which Su et al.'s code
      copies (``grasp_code_stats``); for CIFAR-10 the std is 0.77-0.82x the dataset's, so
      inputs are 1.23-1.30x larger;
    * ``imagenet``: ImageNet's mean and std, as OpenLTH normalises CIFAR-10 (Frankle et al. 2021).
    """

    name: ClassVar[str] = "cifar10"
    description: ClassVar[str] = (
        "CIFAR-10, 50k/10k 32x32 RGB images, 10 classes (torchvision; --download once)"
    )
    title: ClassVar[str] = "CIFAR-10"
    folder: ClassVar[str] = "cifar-10-batches-py"
    archive: ClassVar[str] = "cifar-10-python.tar.gz"
    num_classes: ClassVar[int] = 10
    default_model: ClassVar[str | None] = "cifar_resnet32"
    mean: ClassVar[tuple[float, ...]] = (0.4914, 0.4822, 0.4465)
    std: ClassVar[tuple[float, ...]] = (0.2470, 0.2435, 0.2616)
    grasp_code_stats: ClassVar[Stats] = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))

    normalization: str = noop_field("dataset", validator=_one_of(*NORMALIZATIONS))

    def stats(self) -> Stats:
        """(mean, std) under ``normalization``."""
        if self.normalization == "grasp_code":
            return self.grasp_code_stats
        if self.normalization == "imagenet":
            return IMAGENET_STATS
        return self.mean, self.std

    def _torchvision(self, root: Path, train: bool, download: bool) -> Any:
        from torchvision.datasets import CIFAR10

        return CIFAR10(str(root), train=train, download=download)

    def load(self, root: Path | None, *, download: bool = False) -> DataBundle:
        root = _require_root(self.name, root, f"{self.folder}/ (or where --download puts it)")
        try:
            train, test = (self._torchvision(root, t, download) for t in (True, False))
        # torchvision raises RuntimeError "Dataset not found or corrupted" (md5 check); a failed
        # download raises URLError (an OSError); a truncated or garbled pickle EOFError or
        # UnpicklingError
        except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
            cause = f" ({_one_line(err)})" if download else ""
            raise DataNotFoundError(
                f"{self.title} not found or corrupted{cause}: "
                f"expected the folder {root / self.folder}; "
                f"pass --download once on a machine with internet, or unpack {self.archive} "
                f"from {CIFAR_URL} into --data-root ({root})"
            ) from None
        # torchvision gives (N, H, W, C) uint8 numpy arrays and lists of ints
        splits = [
            _arrays(torch.from_numpy(d.data).permute(0, 3, 1, 2), d.targets) for d in (train, test)
        ]
        return _bundle(
            self.name,
            *splits,
            self.num_classes,
            stats=self.stats(),
            augment=Augment(crop_padding=4, hflip=True),
        )


@attrs.frozen(kw_only=True)
class Cifar100(Cifar10):
    """CIFAR-100 (fine labels) through torchvision (``<root>/cifar-100-python``)."""

    name: ClassVar[str] = "cifar100"
    description: ClassVar[str] = (
        "CIFAR-100, 50k/10k 32x32 RGB images, 100 classes (torchvision; --download once)"
    )
    title: ClassVar[str] = "CIFAR-100"
    folder: ClassVar[str] = "cifar-100-python"
    archive: ClassVar[str] = "cifar-100-python.tar.gz"
    num_classes: ClassVar[int] = 100
    mean: ClassVar[tuple[float, ...]] = (0.5071, 0.4865, 0.4409)
    std: ClassVar[tuple[float, ...]] = (0.2673, 0.2564, 0.2762)
    grasp_code_stats: ClassVar[Stats] = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))

    def _torchvision(self, root: Path, train: bool, download: bool) -> Any:
        from torchvision.datasets import CIFAR100

        return CIFAR100(str(root), train=train, download=download)


# ------------------------------------------------------------------------- Tiny-ImageNet
TINY_LAYOUT = (
    "{base}/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
    "val/val_annotations.txt (or val/<wnid>/images/*.JPEG)"
)


def _tiny_annotations(base: Path) -> dict[str, str]:
    """val image file name -> wnid, from ``val/val_annotations.txt`` (empty if absent)."""
    path = base / "val" / "val_annotations.txt"
    if not path.is_file():
        return {}
    return dict(line.split()[:2] for line in path.read_text().splitlines() if line.strip())


def rearrange_val(root: Path) -> int:
    """Move Tiny-ImageNet's ``val/images/<file>`` to ``val/<wnid>/images/<file>`` following
    ``val/val_annotations.txt`` (the layout ``ImageFolder`` expects) and remove the emptied
    ``val/images``. ``root`` is the folder that holds ``tiny-imagenet-200``. Idempotent: a
    second call moves nothing. Returns the number of files moved."""
    val = Path(root).expanduser() / "tiny-imagenet-200" / "val"
    images = val / "images"
    if not images.is_dir():
        return 0
    annotations = _tiny_annotations(val.parent)
    moved = 0
    for path in sorted(images.iterdir()):
        wnid = annotations.get(path.name)
        if wnid is None:
            continue  # not annotated: leave it where it is
        target = val / wnid / "images"
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(target / path.name))
        moved += 1
    if not any(images.iterdir()):
        images.rmdir()
    return moved


@attrs.frozen(kw_only=True)
class TinyImageNet(Dataset):
    """Tiny-ImageNet-200 from the official folder layout (either val layout); 100k train and
    10k val images of 64×64, classes in sorted wnid order. No automatic download."""

    name: ClassVar[str] = "tiny_imagenet"
    description: ClassVar[str] = (
        "Tiny-ImageNet-200, 100k/10k 64x64 RGB images, 200 classes (unzip it into --data-root)"
    )
    mean: ClassVar[tuple[float, ...]] = (0.4802, 0.4481, 0.3975)
    std: ClassVar[tuple[float, ...]] = (0.2770, 0.2691, 0.2821)

    def _missing(self, base: Path, download: bool, detail: str = "") -> DataNotFoundError:
        no_download = "automatic download is not supported for tiny_imagenet; " if download else ""
        return DataNotFoundError(
            f"Tiny-ImageNet not found in {base}{detail}: {no_download}expected "
            f"{TINY_LAYOUT.format(base=base)}; download {TINY_IMAGENET_URL} and unzip it into "
            f"--data-root ({base.parent})"
        )

    def load(self, root: Path | None, *, download: bool = False) -> DataBundle:
        base = _require_root(self.name, root, "tiny-imagenet-200/") / "tiny-imagenet-200"
        wnids_file = base / "wnids.txt"
        if not wnids_file.is_file() or not (base / "train").is_dir() or not (base / "val").is_dir():
            raise self._missing(base, download)
        wnids = sorted(set(wnids_file.read_text().split()))
        class_to_idx = {w: i for i, w in enumerate(wnids)}
        try:
            train = _image_samples(base / "train", class_to_idx, allow_empty=False)
        except FileNotFoundError as err:
            raise self._missing(base, download, f" ({_one_line(err)})") from None
        test = self._val_samples(base, class_to_idx)
        if not test:
            raise self._missing(base, download, " (no val images)")
        return _bundle(
            self.name,
            _load_samples(train, "RGB"),
            _load_samples(test, "RGB"),
            len(wnids),
            stats=(self.mean, self.std),
            augment=Augment(crop_padding=4, hflip=True),
        )

    @staticmethod
    def _val_samples(base: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
        """Val images of both layouts (a half-rearranged folder works too), sorted by file name."""
        samples = _image_samples(base / "val", class_to_idx, allow_empty=True)  # val/<wnid>/...
        flat = base / "val" / "images"
        if flat.is_dir():
            annotations = _tiny_annotations(base)
            from torchvision.datasets.folder import is_image_file

            for path in sorted(p for p in flat.iterdir() if is_image_file(p.name)):
                wnid = annotations.get(path.name)
                if wnid not in class_to_idx:
                    raise DataNotFoundError(
                        f"{path} has no valid label in {base / 'val' / 'val_annotations.txt'} "
                        f"(got {wnid!r}); re-extract {TINY_IMAGENET_URL}"
                    )
                samples.append((str(path), class_to_idx[wnid]))
        return sorted(samples, key=lambda s: Path(s[0]).name)


# --------------------------------------------------------------------------- ImageFolder
@attrs.frozen(kw_only=True)
class ImageFolderData(Dataset):
    """Any ``<root>/train/<class>/*`` + ``<root>/val/<class>/*`` (or ``test/``) image folder,
    loaded into memory. All images must have the same size; classes are train's sorted folder
    names; mean/std come from train; augmentation: crop padding size // 8 and flips."""

    name: ClassVar[str] = "imagefolder"
    description: ClassVar[str] = (
        "your own images: <data-root>/train/<class>/* and <data-root>/val/<class>/*, all one size"
    )

    grayscale: bool = False

    def load(self, root: Path | None, *, download: bool = False) -> DataBundle:
        root = _require_root(
            self.name, root, "train/<class>/* and val/<class>/* (or test/<class>/*)"
        )
        train_dir = root / "train"
        test_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), root / "val")
        layout = (
            f"expected {train_dir}/<class>/<image> and {test_dir}/<class>/<image> (or {root}/test/)"
        )
        if not train_dir.is_dir() or not test_dir.is_dir():
            raise DataNotFoundError(f"image folder not found: {layout}")
        classes = sorted(e.name for e in train_dir.iterdir() if e.is_dir())
        class_to_idx = {c: i for i, c in enumerate(classes)}
        unknown = sorted({e.name for e in test_dir.iterdir() if e.is_dir()} - set(classes))
        if not classes or unknown:
            what = (
                f"class folders {unknown} in {test_dir} are not in"
                if unknown
                else "no class folders in"
            )
            raise DataNotFoundError(f"{what} {train_dir}; {layout}")
        try:
            train = _image_samples(train_dir, class_to_idx, allow_empty=False)
            test = _image_samples(test_dir, class_to_idx, allow_empty=True)
        except FileNotFoundError as err:
            raise DataNotFoundError(f"{_one_line(err)} in {train_dir}; {layout}") from None
        if not test:
            raise DataNotFoundError(f"no images in {test_dir}; {layout}")
        mode = "L" if self.grayscale else "RGB"
        train_data = _load_samples(train, mode)
        h, w = (int(v) for v in train_data.x.shape[2:])
        test_data = _load_samples(test, mode, like=((h, w), f"every image in {train_dir}"))
        size = min(h, w)
        return _bundle(
            self.name,
            train_data,
            test_data,
            len(classes),
            augment=Augment(crop_padding=size // 8, hflip=True),
        )


@hookimpl
def register_datasets(register: Any) -> None:
    for dataset in (Digits, Synthetic, Cifar10, Cifar100, TinyImageNet, ImageFolderData):
        register(dataset)
