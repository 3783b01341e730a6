"""Offline datasets built in memory: scikit-learn's digits and synthetic fake data."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from hpo.data._registry import DataBundle, DataOptions
from hpo.data._sklearn import load_digits_arrays

#: The train/validation split never depends on the trial's seed, so every trial of a study is
#: validated on the same samples and their metrics compare.
SPLIT_SEED = 1234


def _split(x: torch.Tensor, y: torch.Tensor, val_fraction: float) -> tuple[TensorDataset, ...]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = max(1, int(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or size == x.shape[-1]:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")


def digits(opts: DataOptions) -> DataBundle:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), standardised."""
    images, target = load_digits_arrays()
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1)
    x = _resize((x - x.mean()) / x.std(), opts.image_size)
    y = torch.tensor(target, dtype=torch.long)
    train, val = _split(x, y, opts.val_fraction)
    return DataBundle(train, val, 10, 1, x.shape[-1], in_memory=True)


def fake(opts: DataOptions) -> DataBundle:
    """Random images and labels (like torchvision's FakeData), generated as tensors."""
    size = opts.image_size or 32
    classes = opts.num_classes or 10
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    x = torch.randn(opts.samples, 3, size, size, generator=gen)
    y = torch.randint(0, classes, (opts.samples,), generator=gen)
    train, val = _split(x, y, opts.val_fraction)
    return DataBundle(train, val, classes, 3, size, in_memory=True)
