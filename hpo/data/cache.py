"""Decoded datasets kept as tensors: decoded once, then served from RAM, disk or the device.

``cached`` decodes a dataset once into a ``TensorDataset``. With a directory, the tensors are
also written there (``data_dir/.hpo-cache``) and later runs, in any process, memory-map them
instead of decoding. Within one process the most recent decodes are kept, so the trials a
worker runs one after another decode their data once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

log = logging.getLogger(__name__)

#: Decoded datasets of this process by key; two entries hold one study's train + val splits.
_RECENT: OrderedDict[str, TensorDataset] = OrderedDict()
_RECENT_SIZE = 2


def cache_key(*parts: object) -> str:
    """A short stable name for the decoded form of a dataset described by ``parts``."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def decode(ds: Dataset, num_workers: int = 0, batch_size: int = 256) -> TensorDataset:
    """Every sample of ``ds`` decoded once (in ``num_workers`` processes), stacked."""
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return TensorDataset(torch.cat(xs), torch.cat(ys))


def _remember(key: str, data: TensorDataset) -> TensorDataset:
    _RECENT[key] = data
    _RECENT.move_to_end(key)
    while len(_RECENT) > _RECENT_SIZE:
        _RECENT.popitem(last=False)
    return data


def cached(
    ds: Dataset, key: str, directory: Path | None = None, num_workers: int = 0
) -> TensorDataset:
    """``ds`` decoded: from this process's memory, from ``directory``, or decoded now."""
    if key in _RECENT:
        _RECENT.move_to_end(key)
        return _RECENT[key]
    path = None if directory is None else directory / f"{key}.pt"
    if path is not None and path.is_file():
        saved = torch.load(path, mmap=True, weights_only=True)
        return _remember(key, TensorDataset(saved["x"], saved["y"]))
    data = decode(ds, num_workers)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"x": data.tensors[0], "y": data.tensors[1]}, tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
        log.info("cached %d samples in %s", len(data), path)
    return _remember(key, data)


def forget() -> None:
    """Drop this process's decoded datasets (tests; freeing memory)."""
    _RECENT.clear()
