"""Datasets read from disk: an ImageFolder of the user's images and torchvision's sets.

The train split's transform augments (``DataOptions.augment``); the validation split's never
does. With ``DataOptions.raw`` both yield uint8 tensors for a cache, and the bundle carries the
mean and std to normalise with later.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from hpo.data._builtin import SPLIT_SEED
from hpo.data._registry import DataBundle, DataOptions
from hpo.data.augment import sample_transform

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision class name -> (channels, native side, classes, mean, std)
_SETS = {
    "MNIST": (1, 28, 10, (0.1307,), (0.3081,)),
    "FashionMNIST": (1, 28, 10, (0.2860,), (0.3530,)),
    "CIFAR10": (3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

Stats = tuple[float, ...]


def _transforms(opts: DataOptions, size: int | None, mean: Stats, std: Stats) -> tuple[Any, Any]:
    """(train, validation) per-sample transforms; only the train one augments."""
    aug = None if opts.raw else opts.augment
    train = sample_transform(aug, size, mean, std, raw=opts.raw)
    val = sample_transform(None, size, mean, std, raw=opts.raw)
    return train, val


def _bundle(
    opts: DataOptions, pair: tuple[Dataset, Dataset], shape: tuple[int, int, int], stats: Any
) -> DataBundle:
    """A file bundle: ``shape`` is (classes, channels, size); raw samples carry their stats."""
    mean, std = stats if opts.raw else (None, None)
    return DataBundle(*pair, *shape, in_memory=False, mean=mean, std=std)


def _split_indices(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    n_val = max(1, int(n * val_fraction))
    return order[n_val:], order[:n_val]


def _image_folder(root: Path, transform: Any) -> Any:
    """torchvision's ImageFolder, except that hidden folders (``.hpo-cache``) are no classes."""
    from torchvision.datasets import ImageFolder

    class Folder(ImageFolder):
        def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
            names = sorted(
                e.name
                for e in Path(directory).iterdir()
                if e.is_dir() and not e.name.startswith(".")
            )
            if not names:
                raise FileNotFoundError(f"no class folders in {directory}")
            return names, {name: i for i, name in enumerate(names)}

    return Folder(str(root), transform=transform)


def imagefolder(opts: DataOptions) -> DataBundle:
    """``data_dir/train`` and ``data_dir/val`` class folders, or one folder split by seed.

    Class folders are the non-hidden subfolders (the disk cache lives in ``.hpo-cache``).
    """
    root = Path(opts.data_dir)
    size = opts.image_size or 224
    train_tf, val_tf = _transforms(opts, size, _IMAGENET_MEAN, _IMAGENET_STD)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train: Dataset = _image_folder(root / "train", train_tf)
        val: Dataset = _image_folder(root / "val", val_tf)
        classes = len(train.classes)  # type: ignore[attr-defined]
    else:
        # Two views of one folder, so that the validation samples get no augmentation.
        full_train = _image_folder(root, train_tf)
        train_idx, val_idx = _split_indices(len(full_train), opts.val_fraction)
        train = Subset(full_train, train_idx)
        val = Subset(_image_folder(root, val_tf), val_idx)
        classes = len(full_train.classes)
    return _bundle(opts, (train, val), (classes, 3, size), (_IMAGENET_MEAN, _IMAGENET_STD))


def _open(name: str, opts: DataOptions, make: Callable[[], tuple[Dataset, Dataset]]) -> Any:
    try:
        return make()
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        hint = "" if opts.download else " (download: false)"
        raise FileNotFoundError(f"{name} not found under {opts.data_dir}{hint}: {exc}") from exc


def torchvision_set(name: str, opts: DataOptions) -> DataBundle:
    """MNIST, FashionMNIST or CIFAR10 from ``data_dir``, downloaded there when allowed."""
    import torchvision.datasets as tvd

    channels, native, classes, mean, std = _SETS[name]
    train_tf, val_tf = _transforms(opts, opts.image_size, mean, std)
    cls = getattr(tvd, name)
    kw = {"download": opts.download}
    train, val = _open(
        name,
        opts,
        lambda: (
            cls(opts.data_dir, train=True, transform=train_tf, **kw),
            cls(opts.data_dir, train=False, transform=val_tf, **kw),
        ),
    )
    size = opts.image_size or native
    return _bundle(opts, (train, val), (classes, channels, size), (mean, std))


def flowers102(opts: DataOptions) -> DataBundle:
    """Oxford Flowers-102 (102 classes) at 224px by default.

    torchvision's official splits are train 1020, val 1020, test 6149 images. The common
    fine-tuning recipe (``flowers102_split: large_train``, the default) trains on the 6149 test
    images and validates on train + val (2040); ``official`` trains on train and validates on
    val. Neither uses the other split, so ``official`` leaves test untouched for a final check.
    """
    from torchvision.datasets import Flowers102

    size = opts.image_size or 224
    train_tf, val_tf = _transforms(opts, size, _IMAGENET_MEAN, _IMAGENET_STD)

    def split(name: str, tf: Any) -> Dataset:
        return Flowers102(opts.data_dir, split=name, transform=tf, download=opts.download)

    def make() -> tuple[Dataset, Dataset]:
        if opts.flowers102_split == "official":
            return split("train", train_tf), split("val", val_tf)
        if opts.flowers102_split == "large_train":
            val: Dataset = ConcatDataset([split("train", val_tf), split("val", val_tf)])
            return split("test", train_tf), val
        raise ValueError(f"unknown flowers102 split {opts.flowers102_split!r}")

    train, val = _open("Flowers102", opts, make)
    return _bundle(opts, (train, val), (102, 3, size), (_IMAGENET_MEAN, _IMAGENET_STD))
