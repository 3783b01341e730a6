"""Batches for one epoch: sliced from tensors (on the device or in RAM), or from a DataLoader.

Both kinds reseed their random streams from (seed, epoch) in :meth:`set_epoch`, so the order
and augmentation of epoch k do not depend on what ran before (a resumed run sees the same).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from hpo.data import BatchTransform
from hpo.trainer.distributed import Group
from hpo.trainer.runtime import epoch_seed, same_device

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TensorBatches:
    """Batches sliced from tensors: on the device (no copy per batch) or in (pinned) RAM.

    ``transform`` turns uint8 into normalised floats and, for the train split, augments on
    the device.
    """

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    shuffle: bool
    device: torch.device
    transform: BatchTransform
    seed: int = 0
    train: bool = False
    memory_format: torch.memory_format = torch.contiguous_format
    generator: torch.Generator = field(default_factory=torch.Generator)
    group: Group | None = None  # data-parallel: this rank's share of every batch

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_batches(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(epoch_seed(self.seed, epoch, 0))  # one order for all ranks
        rank = self.group.rank if self.group is not None else 0
        self.transform.reseed(epoch_seed(self.seed, epoch, 1) + rank)  # each its own draws

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        copy = not same_device(self.x.device, self.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.group is not None:
                idx = idx[self.group.share(len(idx))]
            x, y = self.x[idx], self.y[idx]
            if copy:  # RAM cache: pinned staging so the copy overlaps with compute
                pin = self.device.type == "cuda"
                x = (x.pin_memory() if pin else x).to(self.device, non_blocking=pin)
                y = (y.pin_memory() if pin else y).to(self.device, non_blocking=pin)
            x = self.transform(x, train=self.train)
            yield x.contiguous(memory_format=self.memory_format), y


@dataclass
class LoaderBatches:
    """A DataLoader (decoding and augmenting in workers), batches copied without blocking."""

    loader: DataLoader
    device: torch.device
    seed: int = 0
    memory_format: torch.memory_format = torch.contiguous_format
    group: Group | None = None  # data-parallel: this rank's share of every batch

    def __len__(self) -> int:
        return len(self.loader.dataset)  # type: ignore[arg-type]

    @property
    def num_batches(self) -> int:
        return len(self.loader)

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size or 1

    def set_epoch(self, epoch: int) -> None:
        # The sampler's order and the workers' base seed are both drawn from this generator.
        assert self.loader.generator is not None
        self.loader.generator.manual_seed(epoch_seed(self.seed, epoch, 0))

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.loader:
            if self.group is not None:  # every rank decodes the batch: simple, not frugal
                share = self.group.share(len(y))
                x, y = x[share], y[share]
            yield (
                x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format),
                y.to(self.device, non_blocking=True),
            )


Batches = TensorBatches | LoaderBatches


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


def loader_batches(
    ds: Dataset,
    batch_size: int,
    device: torch.device,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int,
    persistent: bool,
) -> LoaderBatches:
    """Batches of a file dataset through a DataLoader (pinned memory on CUDA)."""
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and num_workers > 0,
        generator=torch.Generator(),
    )
    return LoaderBatches(loader, device, seed)
