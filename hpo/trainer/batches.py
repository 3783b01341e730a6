"""Batches for one epoch: sliced from tensors already on the device, or from a DataLoader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TensorBatches:
    """An in-memory dataset moved to the device once; each epoch is a shuffled slicing."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    shuffle: bool
    generator: torch.Generator

    def __len__(self) -> int:
        return len(self.x)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]


@dataclass
class LoaderBatches:
    """A DataLoader whose batches are copied to the device without blocking the host."""

    loader: DataLoader
    device: torch.device

    def __len__(self) -> int:
        return len(self.loader.dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.loader:
            yield (
                x.to(self.device, non_blocking=True),
                y.to(self.device, non_blocking=True),
            )


def subset(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """The first ``fraction`` of a seeded permutation of ``ds`` (subset training)."""
    if fraction >= 1.0:
        return ds
    n = len(ds)  # type: ignore[arg-type]
    keep = max(1, int(n * fraction))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:keep]
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[order] for t in ds.tensors))
    return Subset(ds, order.tolist())


def make_batches(
    ds: Dataset,
    batch_size: int,
    device: torch.device,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int,
) -> TensorBatches | LoaderBatches:
    """Batches of ``ds`` on ``device``; tensor datasets skip the DataLoader entirely."""
    if isinstance(ds, TensorDataset):
        x, y = (t.to(device) for t in ds.tensors)
        gen = torch.Generator().manual_seed(seed)
        return TensorBatches(x, y, batch_size, shuffle, gen)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    return LoaderBatches(loader, device)
