"""The built-in dataset plugins: digits, synthetic, CIFAR-10/100, Tiny-ImageNet, imagefolder.

Nothing here touches the network: CIFAR and Tiny-ImageNet are written by the tests as tiny
datasets in the real on-disk formats, and every download path is monkeypatched to fail.
"""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from prunekit.errors import DataNotFoundError, PrunekitError
from prunekit.pipeline import load_dataset
from prunekit.plugins import get_plugins

BUILTIN = {"digits", "synthetic", "cifar10", "cifar100", "tiny_imagenet", "imagefolder"}


def test_all_builtin_datasets_are_registered() -> None:
    """The datasets plugin loads without problems and registers every built-in dataset."""
    plugins = get_plugins()
    assert not [p for p in plugins.problems if "datasets" in p[0]]
    assert set(plugins.registry("dataset").names()) >= BUILTIN


# ------------------------------------------------------------------------------- digits
def test_digits_shapes_range_split_and_stats() -> None:
    """digits: (1, 8, 8) uint8 images spanning 0..255, int64 labels of 10 classes, a
    stratified 80/20 split identical across loads with no image in both splits, covering all
    of scikit-learn's digits, and mean/std equal to a numpy computation on the train split."""
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert a.train.x.dtype == torch.uint8 and a.train.y.dtype == torch.int64
    assert int(a.train.x.min()) == 0 and int(a.train.x.max()) == 255
    for split in ("train", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)

    raw = load_digits()
    counts = np.bincount(raw.target, minlength=10)
    test_counts = np.bincount(a.test.y.numpy(), minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * counts) <= 1)  # every class split 80/20
    assert len(a.train) + len(a.test) == len(raw.target)

    def rows(data) -> set[tuple[bytes, int]]:
        return {(x.tobytes(), int(y)) for x, y in zip(data.x.numpy(), data.y.numpy(), strict=True)}

    train_rows, test_rows = rows(a.train), rows(a.test)
    assert not train_rows & test_rows
    scaled = np.rint(raw.images * 255 / 16).astype(np.uint8)[:, None]
    assert train_rows | test_rows == {
        (x.tobytes(), int(y)) for x, y in zip(scaled, raw.target, strict=True)
    }

    x = a.train.x.numpy().astype(np.float64) / 255
    assert a.mean == pytest.approx([x.mean()], abs=1e-5)
    assert a.std == pytest.approx([x.std(ddof=1)], abs=1e-5)


# ---------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_shaped_as_requested() -> None:
    """synthetic: two loads give the same tensors; options set shape, classes and sizes;
    every class is present; another seed gives other images."""
    from prunekit.pipeline import instantiate

    opts = {"channels": 1, "height": 8, "width": 12, "num_classes": 3, "train_size": 30, "test_size": 9}
    a = instantiate("dataset", "synthetic", opts).load(None)
    b = instantiate("dataset", "synthetic", opts).load(None)
    c = instantiate("dataset", "synthetic", {**opts, "seed": 1}).load(None)
    assert a.input_shape == (1, 8, 12) and a.num_classes == 3
    assert (len(a.train), len(a.test)) == (30, 9)
    assert a.train.x.dtype == torch.uint8 and a.train.y.dtype == torch.int64
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert set(a.train.y.tolist()) == {0, 1, 2}
    assert not torch.equal(a.train.x, c.train.x)
    default = load_dataset("synthetic")
    assert default.input_shape == (3, 32, 32) and default.num_classes == 10


def test_synthetic_classes_are_separable() -> None:
    """synthetic has a learnable signal: nearest class mean (fit on train) beats chance on test."""
    d = load_dataset("synthetic")
    xtr, xte = d.train.x.flatten(1).float(), d.test.x.flatten(1).float()
    means = torch.stack([xtr[d.train.y == c].mean(0) for c in range(d.num_classes)])
    pred = torch.cdist(xte, means).argmin(1)
    assert (pred == d.test.y).float().mean() > 0.5  # chance is 0.1


# -------------------------------------------------------------------------------- CIFAR
def _write_cifar(root: Path, hundred: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """A tiny CIFAR in the real python-pickle format; returns (train_x, train_y, test_x, test_y)
    with images as (N, 3, 32, 32), the order of the flattened rows in the files."""
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    classes = 100 if hundred else 10
    label_key = "fine_labels" if hundred else "labels"

    def batch(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, classes, n)
        entry = {
            "data": x.reshape(n, -1),
            label_key: [int(v) for v in y],
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        if hundred:
            entry["coarse_labels"] = [int(v) // 5 for v in y]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        return x, y

    if hundred:
        train = [batch("train", 6)]
        meta = {
            "fine_label_names": [f"c{i}" for i in range(100)],
            "coarse_label_names": [f"s{i}" for i in range(20)],
        }
    else:
        train = [batch(f"data_batch_{i}", 2 + i) for i in range(1, 6)]
        meta = {"label_names": [f"c{i}" for i in range(10)]}
    test = batch("test" if hundred else "test_batch", 4)
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), *test)


@pytest.fixture
def no_cifar_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt by torchvision to download CIFAR fails the test."""
    from torchvision.datasets import CIFAR10, cifar

    def fail(*args, **kwargs):
        pytest.fail("a CIFAR download was attempted")

    monkeypatch.setattr(CIFAR10, "download", fail)  # CIFAR100 inherits it
    monkeypatch.setattr(cifar, "download_and_extract_archive", fail)


@pytest.fixture
def cifar_md5_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision checks the md5 of the real CIFAR files (CIFAR10._check_integrity and
    _load_meta both call torchvision.datasets.cifar.check_integrity); our hand-written files
    cannot match, so only their existence is checked."""
    from torchvision.datasets import cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loads_the_pickled_batches_pixel_by_pixel(
    name: str, tmp_path: Path, no_cifar_download: None, cifar_md5_ignored: None
) -> None:
    """cifar10/100 read the real pickle format: images (N, 3, 32, 32) uint8 equal to what was
    written (rows are CHW-flattened, so a wrong HWC/CHW transposition fails), labels (fine
    labels for CIFAR-100) as int64, standard mean/std, crop-4 + flip; download is off by default."""
    rng = np.random.default_rng(0)
    train_x, train_y, test_x, test_y = _write_cifar(tmp_path, name == "cifar100", rng)
    d = load_dataset(name, tmp_path)
    assert d.train.x.dtype == torch.uint8 and d.train.y.dtype == torch.int64
    assert np.array_equal(d.train.x.numpy(), train_x) and np.array_equal(d.train.y.numpy(), train_y)
    assert np.array_equal(d.test.x.numpy(), test_x) and np.array_equal(d.test.y.numpy(), test_y)
    assert d.num_classes == (100 if name == "cifar100" else 10)
    expected_mean = (0.5071, 0.4865, 0.4409) if name == "cifar100" else (0.4914, 0.4822, 0.4465)
    assert d.mean == pytest.approx(expected_mean)
    assert (d.augment.crop_padding, d.augment.hflip) == (4, True)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_normalization_option(
    name: str, tmp_path: Path, no_cifar_download: None, cifar_md5_ignored: None
) -> None:
    """normalization="grasp_code" normalises with the constants of GraSP's / Su et al.'s code
    (CIFAR-10: the same mean, std 0.2023/0.1994/0.2010, so inputs grow by 0.2470/0.2023,
    0.2435/0.1994, 0.2616/0.2010 over the default), "imagenet" with ImageNet's mean/std
    (OpenLTH); the default stays out of the result identity, another value enters it."""
    from prunekit.identity import canonical
    from prunekit_plugins.datasets import Cifar10, Cifar100

    _write_cifar(tmp_path, name == "cifar100", np.random.default_rng(0))
    cls = Cifar100 if name == "cifar100" else Cifar10
    default, grasp, imagenet = (
        cls(normalization=n).load(tmp_path) for n in ("dataset", "grasp_code", "imagenet")
    )
    x = default.train.x
    pixels = x.double() / 255.0
    if name == "cifar10":
        mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
        ratio = (0.2470 / 0.2023, 0.2435 / 0.1994, 0.2616 / 0.2010)
        assert torch.allclose(
            grasp.normalize(x), default.normalize(x) * torch.tensor(ratio).view(1, 3, 1, 1), atol=1e-5
        )
    else:
        mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
    expected = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(grasp.normalize(x).double(), expected, atol=1e-5)
    in_imagenet = (pixels - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)) / torch.tensor(
        (0.229, 0.224, 0.225)
    ).view(1, 3, 1, 1)
    assert torch.allclose(imagenet.normalize(x).double(), in_imagenet, atol=1e-5)
    assert torch.equal(grasp.train.x, x)  # only the normalisation changes
    assert canonical(cls()) == {} and canonical(cls(normalization="grasp_code")) == {"normalization": "grasp_code"}
    with pytest.raises(ValueError, match="normalization"):
        cls(normalization="authors")


@pytest.mark.parametrize(
    ("name", "folder"), [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")]
)
def test_missing_cifar_names_the_folder_and_how_to_get_it(
    name: str, folder: str, tmp_path: Path, no_cifar_download: None
) -> None:
    """Missing CIFAR files: a one-line DataNotFoundError naming the exact folder expected,
    --download and the archive's web page; no download is attempted."""
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(name, tmp_path)
    msg = str(err.value)
    assert str(tmp_path / folder) in msg
    assert "--download" in msg and "https://www.cs.toronto.edu/~kriz/cifar.html" in msg
    assert "\n" not in msg


def test_corrupted_cifar_is_reported_as_not_found(tmp_path: Path, no_cifar_download: None) -> None:
    """Files that fail torchvision's md5 check (here: garbage) give DataNotFoundError, not
    torchvision's RuntimeError."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / f).write_bytes(b"garbage")
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)


def test_failed_cifar_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """download=True asks torchvision to download; a network failure becomes a one-line
    DataNotFoundError that includes the cause."""
    from torchvision.datasets import cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataNotFoundError, match="no network in tests") as err:
        load_dataset("cifar10", tmp_path, download=True)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tiny_imagenet", "imagefolder"])
def test_root_none_asks_for_data_root(name: str) -> None:
    """Datasets read from disk need a root; without one the error says to pass --data-root."""
    with pytest.raises(DataNotFoundError, match="--data-root"):
        load_dataset(name, None)


# ------------------------------------------------------------------------ Tiny-ImageNet
def _save(path: Path, array: np.ndarray) -> np.ndarray:
    """Save an image with PIL and return what PIL decodes from the file, as RGB (H, W, 3)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _write_tiny(
    root: Path,
) -> tuple[list[np.ndarray], list[str], dict[str, tuple[np.ndarray, str]]]:
    """2 classes x 3 train JPEGs (one grayscale) and 2 val JPEGs in the official layout.
    Returns (train images, their wnids, {val file: (image, wnid)})."""
    rng = np.random.default_rng(1)
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    wnids = ["n09999999", "n01111111"]  # unsorted on purpose: labels follow sorted order
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    train_images, train_wnids = [], []
    for wnid in wnids:
        (base / "train" / wnid).mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("not an image\n")
        for i in range(3):
            shape = (64, 64) if (wnid, i) == (wnids[0], 0) else (64, 64, 3)
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            train_images.append(_save(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", image))
            train_wnids.append(wnid)
    val = {}
    lines = []
    for i, wnid in enumerate([wnids[1], wnids[0]]):
        file = f"val_{i}.JPEG"
        val[file] = (
            _save(
                base / "val" / "images" / file, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            ),
            wnid,
        )
        lines.append(f"{file}\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return train_images, train_wnids, val


def _as_set(x: torch.Tensor, y: torch.Tensor) -> list[tuple[bytes, int]]:
    """(HWC image bytes, label) pairs, sorted: compares splits without fixing their order."""
    return sorted(
        (img.permute(1, 2, 0).numpy().tobytes(), int(label))
        for img, label in zip(x, y, strict=True)
    )


def test_tiny_imagenet_labels_follow_annotations_and_rearrange_keeps_data(tmp_path: Path) -> None:
    """tiny_imagenet: train images and labels come from train/<wnid>/images (a grayscale JPEG
    becomes 3 equal channels), val labels from val_annotations.txt, class index = position of
    the wnid in sorted order; rearrange_val moves val images to val/<wnid>/images/, the loader
    then gives identical tensors, and a second rearrange moves nothing and changes nothing."""
    from prunekit_plugins.datasets import rearrange_val

    train_images, train_wnids, val = _write_tiny(tmp_path)
    index = {w: i for i, w in enumerate(sorted(set(train_wnids)))}
    d = load_dataset("tiny_imagenet", tmp_path)
    assert d.input_shape == (3, 64, 64) and d.num_classes == 2
    assert d.train.x.dtype == torch.uint8 and d.train.y.dtype == torch.int64
    assert (d.augment.crop_padding, d.augment.hflip) == (4, True)
    expected_train = sorted(
        (img.tobytes(), index[w]) for img, w in zip(train_images, train_wnids, strict=True)
    )
    assert _as_set(d.train.x, d.train.y) == expected_train
    expected_val = sorted((img.tobytes(), index[w]) for img, w in val.values())
    assert _as_set(d.test.x, d.test.y) == expected_val

    val_dir = tmp_path / "tiny-imagenet-200" / "val"
    assert rearrange_val(tmp_path) == 2
    assert not (val_dir / "images").exists()
    for file, (_, wnid) in val.items():
        assert (val_dir / wnid / "images" / file).is_file()
    for _ in range(2):
        e = load_dataset("tiny_imagenet", tmp_path)
        for split in ("train", "test"):
            assert torch.equal(getattr(d, split).x, getattr(e, split).x)
            assert torch.equal(getattr(d, split).y, getattr(e, split).y)
        assert rearrange_val(tmp_path) == 0


def test_tiny_imagenet_missing_or_download_requested(tmp_path: Path) -> None:
    """Missing Tiny-ImageNet: DataNotFoundError with the expected folder and the zip's URL;
    with download=True it also says automatic download is not supported."""
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("tiny_imagenet", tmp_path, download=True)
    msg = str(err.value)
    assert str(tmp_path / "tiny-imagenet-200") in msg
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in msg
    assert "not supported" in msg and "\n" not in msg


# -------------------------------------------------------------------------- imagefolder
def _write_folder(root: Path) -> dict[str, list[tuple[np.ndarray, str]]]:
    """PNG folder: train/{zebra,ant}/ with 2 images each, val/{zebra,ant}/ with 1 each (6x4)."""
    from PIL import Image

    rng = np.random.default_rng(2)
    out: dict[str, list[tuple[np.ndarray, str]]] = {"train": [], "val": []}
    for split, n in (("train", 2), ("val", 1)):
        for cls in ("zebra", "ant"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / split / cls / f"{i}.png")
                out[split].append((image, cls))
    return out


def test_imagefolder_classes_pixels_and_stats(tmp_path: Path) -> None:
    """imagefolder: classes are train's sorted folder names, pixels equal the PNGs written,
    mean/std are computed from the train images, crop padding is size // 8 with flips."""
    written = _write_folder(tmp_path)
    index = {"ant": 0, "zebra": 1}
    d = load_dataset("imagefolder", tmp_path)
    assert d.input_shape == (3, 4, 6) and d.num_classes == 2
    for split, data in (("train", d.train), ("val", d.test)):
        expected = sorted((img.tobytes(), index[cls]) for img, cls in written[split])
        assert _as_set(data.x, data.y) == expected
    train = np.stack([img for img, _ in written["train"]]).astype(np.float64) / 255
    assert d.mean == pytest.approx(train.mean(axis=(0, 1, 2)), abs=1e-5)
    assert d.std == pytest.approx(train.std(axis=(0, 1, 2), ddof=1), abs=1e-5)
    assert (d.augment.crop_padding, d.augment.hflip) == (0, True)  # min(4, 6) // 8


def test_imagefolder_image_of_another_size_is_named(tmp_path: Path) -> None:
    """An image whose size differs from the others gives a one-line error naming that file."""
    from PIL import Image

    _write_folder(tmp_path)
    bad = tmp_path / "val" / "ant" / "odd.png"
    Image.fromarray(np.zeros((5, 6, 3), dtype=np.uint8)).save(bad)
    with pytest.raises(PrunekitError) as err:
        load_dataset("imagefolder", tmp_path)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_imagefolder_missing_folder_names_layout(tmp_path: Path) -> None:
    """Without train/ and val/ the error shows the layout expected under the given root."""
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("imagefolder", tmp_path)
    assert str(tmp_path / "train") in str(err.value)


def test_digits_test_fraction_is_a_stratified_split_of_all_images() -> None:
    """test_fraction=0.5 holds out half of the 1,797 images, every class in proportion, with
    no image in both splits; out-of-range fractions are one line."""
    from prunekit.errors import PrunekitError
    from prunekit.pipeline import load_dataset

    data = load_dataset("digits", options={"test_fraction": 0.5})
    assert len(data.train) + len(data.test) == 1797 and abs(len(data.test) - 898.5) <= 1
    counts = torch.bincount(data.test.y, minlength=10).float() / torch.bincount(
        torch.cat([data.train.y, data.test.y]), minlength=10
    ).float()
    assert torch.all((counts - 0.5).abs() < 0.02)
    train_rows = {(*tuple(x.flatten().tolist()), int(y)) for x, y in zip(data.train.x, data.train.y)}
    test_rows = [(*tuple(x.flatten().tolist()), int(y)) for x, y in zip(data.test.x, data.test.y)]
    # digits has a few duplicate images; the split is by index, so at most those can repeat
    assert sum(r in train_rows for r in test_rows) <= 20
    with pytest.raises(PrunekitError, match="test_fraction"):
        load_dataset("digits", options={"test_fraction": 0.99})
