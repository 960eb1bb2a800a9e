"""The dataset contract (:class:`~prunekit.interfaces.Dataset`): :func:`check_dataset`."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from prunekit.data import ArrayData, DataBundle
from prunekit.errors import PrunekitError
from prunekit.interfaces import Dataset, TrainConfig
from prunekit.testing.fixtures import call_plugin, fail, identical, resolve, single_threaded

NORMALIZED_SAMPLES = 256  # images of each split the kit normalises


@single_threaded
def check_dataset(
    name_or_cls: str | type[Dataset] | Dataset, *, root: str | Path | None = None, **options: Any
) -> None:
    """Check a dataset against the contract of :class:`~prunekit.interfaces.Dataset`.

    ``needs_root`` is a bool, ``default_model`` None or a str, ``default_protocol`` None or a
    :class:`~prunekit.interfaces.TrainConfig`. A dataset that reads files (``needs_root``)
    refuses ``load(None)`` with a one-line :class:`~prunekit.errors.PrunekitError` (e.g.
    :class:`~prunekit.errors.DataNotFoundError`) that names ``--data-root``, and an empty
    folder with a one-line PrunekitError too, never downloading. When it can load
    (``needs_root = False``, or ``root`` given): a :class:`~prunekit.data.DataBundle` whose train
    and test splits are non-empty uint8 (N, C, H, W) images of the same (C, H, W) with one
    int64 label per image in ``0..num_classes-1``; one finite mean and one finite positive std
    per channel, so normalised images are finite; and the same splits, bit for bit, from a
    second load (a split fixed by a seed, never by the clock or the global RNG).
    """
    subject, dataset = resolve("dataset", name_or_cls, options)
    needs_root = getattr(dataset, "needs_root", None)
    if not isinstance(needs_root, bool):
        fail(subject, f"needs_root is {needs_root!r}", "a bool class variable")
    model = getattr(dataset, "default_model", None)
    if model is not None and not (isinstance(model, str) and model):
        fail(subject, f"default_model is {model!r}", "None or the name of a timm model")
    protocol = getattr(dataset, "default_protocol", None)
    if protocol is not None and not isinstance(protocol, TrainConfig):
        fail(
            subject,
            f"default_protocol is a {type(protocol).__name__}",
            "None (the CIFAR protocol) or a prunekit.interfaces.TrainConfig",
        )
    if needs_root:
        _check_refusals(subject, dataset)
        if root is None:
            return
    where = "loaded" + (f" from {root}" if root is not None else "")
    first = _check_bundle(subject, where, dataset, root)
    again = _check_bundle(subject, where, dataset, root)
    for split in ("train", "test"):
        a, b = getattr(first, split), getattr(again, split)
        if not (identical(a.x, b.x) and identical(a.y, b.y)):
            fail(
                f"{subject} {where}",
                f"two loads gave different {split} splits",
                "the same images and labels in the same order from every load",
                "Split and shuffle with a generator of a fixed seed "
                "(prunekit.data.make_generator), never the global RNG.",
            )


def _check_refusals(subject: str, dataset: Dataset) -> None:
    """Without --data-root, and with an empty folder: one line, a PrunekitError."""
    with tempfile.TemporaryDirectory(prefix="prunekit-kit-empty-") as empty:
        for root, where, needs in (
            (None, "without --data-root (load(None))", "--data-root"),
            (Path(empty), "with an empty --data-root folder", None),
        ):
            try:
                dataset.load(root, download=False)
            except PrunekitError as err:
                text = str(err)
                if not text.strip() or "\n" in text.strip():
                    fail(
                        f"{subject} {where}",
                        f"the error is {text!r}",
                        "one line that says what is missing and what to pass",
                    )
                if needs is not None and needs not in text:
                    fail(
                        f"{subject} {where}",
                        f"the error {text!r} does not mention {needs}",
                        f"a message that tells the user to pass {needs} DIR",
                    )
                continue
            except Exception as err:  # noqa: BLE001 - the wrong kind of error is the finding
                fail(
                    f"{subject} {where}",
                    f"load() raised {type(err).__name__}: {err}",
                    "a prunekit.errors.DataNotFoundError (one line: where the files must be "
                    "and how to get them)",
                )
            fail(
                f"{subject} {where}",
                "load() returned data",
                "a prunekit.errors.DataNotFoundError: needs_root is True, so there is nothing "
                "to read",
                "Set needs_root = False if the dataset needs no files.",
            )


def _check_bundle(subject: str, where: str, dataset: Dataset, root: str | Path | None) -> DataBundle:
    at = f"{subject} {where}"
    folder = Path(root) if root is not None else None
    bundle = call_plugin(subject, where, lambda: dataset.load(folder, download=False))
    if not isinstance(bundle, DataBundle):
        fail(at, f"load() returned a {type(bundle).__name__}", "a prunekit.data.DataBundle")
    classes = bundle.num_classes
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        fail(at, f"num_classes is {classes!r}", "an int of at least 2")
    shapes = {}
    for split in ("train", "test"):
        part = getattr(bundle, split)
        here = f"{at}, {split} split"
        if not isinstance(part, ArrayData):
            fail(here, f"it is a {type(part).__name__}", "a prunekit.data.ArrayData")
        if part.x.dtype != torch.uint8 or part.x.ndim != 4:
            fail(here, f"the images are {part.x.dtype} {tuple(part.x.shape)}", "uint8 (N, C, H, W)")
        if len(part) == 0:
            fail(here, "it holds no images", "at least one image")
        if part.y.dtype != torch.int64 or part.y.ndim != 1:
            fail(here, f"the labels are {part.y.dtype} {tuple(part.y.shape)}", "int64 (N,)")
        low, high = int(part.y.min()), int(part.y.max())
        if low < 0 or high >= classes:
            fail(here, f"labels lie in {low}..{high}", f"labels in 0..{classes - 1} (num_classes {classes})")
        shapes[split] = tuple(part.x.shape[1:])
    if shapes["train"] != shapes["test"]:
        fail(
            at,
            f"train images are {shapes['train']} (C, H, W) but test images {shapes['test']}",
            "the same image shape in both splits (one model sees both)",
        )
    channels = shapes["train"][0]
    for label, values, positive in (("mean", bundle.mean, False), ("std", bundle.std, True)):
        numbers = tuple(values) if isinstance(values, (tuple, list)) else ()
        if len(numbers) != channels or not all(
            isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or not positive)
            for v in numbers
        ):
            fail(
                at,
                f"its {label} is {values!r}",
                f"{channels} finite {'positive ' if positive else ''}float(s), one per channel "
                "(in [0, 1] units)",
                "prunekit.data.channel_stats(train.x) computes them.",
            )
    for split in ("train", "test"):
        x = getattr(bundle, split).x[:NORMALIZED_SAMPLES]
        normalized = call_plugin(subject, where, bundle.normalize, x)
        if not bool(torch.isfinite(normalized).all()):
            fail(
                f"{at}, {split} split",
                "normalised images are not finite",
                "finite values after normalisation by mean and std",
            )
    return bundle
