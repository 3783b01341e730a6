"""Data-parallel training over a process group: one trial, N processes (one per GPU).

The trainer sees a :class:`Group` (its rank and the world size) and nothing of how the group
was formed or who talks to the study. What it guarantees:

- **The same hyperparameters at any N.** ``batch_size`` stays the global micro-batch: every
  rank walks the same seeded order and takes its contiguous share of each batch (about
  ``batch_size / N`` samples), so an optimizer step sees the same samples as with one process.
- **The same gradient.** Each rank's mean loss is weighted by its share of the step's samples
  times N; DistributedDataParallel averages over the N ranks, which gives the mean over the
  step's samples exactly, uneven shards, accumulation and the short last batch included.
- **The same metrics.** Loss sums, correct counts and sample counts are summed over the ranks
  before any metric is computed, so every rank (and the study) sees the whole epoch's numbers.

Batch-norm statistics are per rank (DistributedDataParallel's default), so a model with batch
norm trains a little differently at N > 1; one without matches to float tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Group:
    """This process's place in the trial's process group (already initialised)."""

    rank: int
    world: int

    def share(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` samples (the first ranks take one more when
        ``n`` does not divide evenly)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def sum(self, *values: torch.Tensor) -> list[torch.Tensor]:
        """Each of ``values`` (scalars, one dtype each) summed over the ranks, in one call."""
        flat = torch.stack([v.to(torch.float64) for v in values])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        return list(flat.unbind())

    def agree_min(self, value: int, device: torch.device) -> int:
        """The smallest ``value`` over the ranks (the auto batch every rank can fit)."""
        t = torch.tensor([value], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (rank 0's weights broadcast to every rank)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type != "cuda":
        return DistributedDataParallel(model)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return DistributedDataParallel(model, device_ids=[index])
