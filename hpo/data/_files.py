"""Datasets read from disk: an ImageFolder of the user's images and torchvision's sets."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from hpo.data._builtin import SPLIT_SEED
from hpo.data._registry import DataBundle, DataOptions

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision class name -> (channels, native side, classes, mean, std)
_SETS = {
    "MNIST": (1, 28, 10, (0.1307,), (0.3081,)),
    "FashionMNIST": (1, 28, 10, (0.2860,), (0.3530,)),
    "CIFAR10": (3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def _transform(size: int | None, mean: tuple[float, ...], std: tuple[float, ...]) -> object:
    from torchvision import transforms

    steps: list[object] = []
    if size is not None:
        steps += [transforms.Resize(size), transforms.CenterCrop(size)]
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def _random_split(ds: Dataset, val_fraction: float) -> tuple[Subset, Subset]:
    n = len(ds)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    n_val = max(1, int(n * val_fraction))
    return Subset(ds, order[n_val:]), Subset(ds, order[:n_val])


def imagefolder(opts: DataOptions) -> DataBundle:
    """``data_dir/train`` and ``data_dir/val`` class folders, or one folder split by seed."""
    from torchvision.datasets import ImageFolder

    root = Path(opts.data_dir)
    size = opts.image_size or 224
    tf = _transform(size, _IMAGENET_MEAN, _IMAGENET_STD)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train: Dataset = ImageFolder(str(root / "train"), transform=tf)
        val: Dataset = ImageFolder(str(root / "val"), transform=tf)
        classes = len(train.classes)  # type: ignore[attr-defined]
    else:
        full = ImageFolder(str(root), transform=tf)
        train, val = _random_split(full, opts.val_fraction)
        classes = len(full.classes)
    return DataBundle(train, val, classes, 3, size, in_memory=False)


def torchvision_set(name: str, opts: DataOptions) -> DataBundle:
    """MNIST, FashionMNIST or CIFAR10 from ``data_dir``, downloaded there when allowed."""
    import torchvision.datasets as tvd

    channels, native, classes, mean, std = _SETS[name]
    tf = _transform(opts.image_size, mean, std)
    cls = getattr(tvd, name)
    try:
        train = cls(opts.data_dir, train=True, download=opts.download, transform=tf)
        val = cls(opts.data_dir, train=False, download=opts.download, transform=tf)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        hint = "" if opts.download else " (download: false)"
        raise FileNotFoundError(f"{name} not found under {opts.data_dir}{hint}: {exc}") from exc
    return DataBundle(train, val, classes, channels, opts.image_size or native, in_memory=False)
