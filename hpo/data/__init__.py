"""Dataset registry: name -> builder of a train/validation pair.

Builders import torch lazily so that reading the registry (spec validation) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.data._registry import DATASETS, DataBundle, DataOptions, load_data, prepare_data
from hpo.data.options import augment_of, data_options

if TYPE_CHECKING:
    from hpo.data.batch_augment import BatchTransform
    from hpo.data.cache import cache_key, cached

__all__ = [
    "BatchTransform",
    "cache_key",
    "cached",
    "DATASETS",
    "DataBundle",
    "DataOptions",
    "augment_of",
    "data_options",
    "load_data",
    "prepare_data",
]


def __getattr__(name: str) -> Any:
    # They import torch: loaded on first use, so reading the registry stays cheap.
    if name == "BatchTransform":
        from hpo.data import batch_augment

        return batch_augment.BatchTransform
    if name in ("cache_key", "cached"):
        from hpo.data import cache

        return getattr(cache, name)
    raise AttributeError(name)
