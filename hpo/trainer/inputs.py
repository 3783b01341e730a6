"""From the config to train/validation batches: load, subset, cache, place, augment.

Where the data lives (``cache``):

- in-memory sets (digits, fake) are tensors already: ``auto``/``gpu`` keep them on the device,
  ``none``/``ram``/``disk`` in RAM, copied per batch;
- file sets are decoded per epoch by a DataLoader (``none``, the ``auto`` default), or decoded
  once to uint8 tensors kept in RAM (``ram``), on disk under ``data_dir/.hpo-cache`` (``disk``)
  or on the device (``gpu``).

Tensors are augmented per batch on the device; DataLoader samples in the transform pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from hpo.data import (
    BatchTransform,
    DataBundle,
    augment_of,
    cache_key,
    cached,
    data_options,
    load_data,
)
from hpo.models import model_entry
from hpo.trainer.batches import Batches, TensorBatches, loader_batches, subset
from hpo.trainer.config import TrainConfig
from hpo.userfn import is_ref

CACHE_DIR = ".hpo-cache"


@dataclass
class Inputs:
    """The datasets of one run and where their tensors live (None: a DataLoader decodes)."""

    data: DataBundle
    train: Dataset
    val: Dataset
    storage: torch.device | None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.data.sample_shape is not None:  # a user's dataset: its samples' own shape
            return self.data.sample_shape
        return (self.data.in_channels, self.data.image_size, self.data.image_size)


def _storage(config: TrainConfig, in_memory: bool, device: torch.device) -> torch.device | None:
    if is_ref(config.dataset) and not in_memory:
        return None  # a user's dataset of any kind: its own __getitem__, through a DataLoader
    if config.cache in ("gpu", "auto") and (in_memory or config.cache == "gpu"):
        return device
    if config.cache == "none" and not in_memory:
        return None
    return torch.device("cpu")


def load_inputs(config: TrainConfig, device: torch.device) -> Inputs:
    """Load, subset and (when asked) decode-and-cache the data of ``config``."""
    raw = config.cache in ("ram", "disk", "gpu")  # in-memory sets ignore it: no decoding
    data = load_data(config.dataset, data_options(config, config.image_size, raw=raw))
    min_size = model_entry(config.model).min_size
    if data.image_size < min_size:  # upscale tiny images (8px digits) for models that need more
        data = load_data(config.dataset, data_options(config, min_size, raw=raw))
    storage = _storage(config, data.in_memory, device)
    train, val = subset(data.train, config.fraction, config.seed), data.val
    if storage is not None and not data.in_memory:
        directory = Path(config.data_dir) / CACHE_DIR if config.cache == "disk" else None
        where = (config.dataset, str(Path(config.data_dir).resolve()), config.flowers102_split)
        common = (*where, data.image_size, config.val_fraction)
        picked = (config.fraction, config.seed) if config.fraction < 1 else ()
        n_train = len(train)  # type: ignore[arg-type]
        train_key, val_key = (
            cache_key("train", *common, *picked, n_train),
            cache_key("val", *common),
        )
        train = cached(train, train_key, directory, config.num_workers)
        val = cached(val, val_key, directory, config.num_workers)
    return Inputs(data, train, val, storage)


def make_batches(
    inputs: Inputs,
    config: TrainConfig,
    batch_size: int,
    device: torch.device,
    memory_format: torch.memory_format,
) -> tuple[Batches, Batches]:
    """(train, validation) batches; only the train split shuffles and augments."""
    out: list[Batches] = []
    for ds, is_train in ((inputs.train, True), (inputs.val, False)):
        if inputs.storage is None:
            # Workers that persist across epochs carry their RNG state along: a deterministic
            # run starts fresh ones each epoch, seeded from the epoch's generator.
            loader = loader_batches(
                ds,
                batch_size,
                device,
                shuffle=is_train,
                seed=config.seed,
                num_workers=config.num_workers,
                persistent=not config.deterministic,
            )
            loader.memory_format = memory_format
            out.append(loader)
            continue
        assert isinstance(ds, TensorDataset)
        x, y = (t.to(inputs.storage) for t in ds.tensors)
        transform = BatchTransform(augment_of(config), inputs.data.mean, inputs.data.std, device)
        out.append(
            TensorBatches(
                x, y, batch_size, is_train, device, transform, config.seed, is_train, memory_format
            )
        )
    return out[0], out[1]
