"""Dataset registry: name -> builder of a train/validation pair.

Builders import torch lazily so that reading the registry (spec validation) stays cheap.
"""

from __future__ import annotations

from hpo.data._registry import DATASETS, DataBundle, DataOptions, load_data, prepare_data
from hpo.data.options import augment_of, data_options

__all__ = [
    "DATASETS",
    "DataBundle",
    "DataOptions",
    "augment_of",
    "data_options",
    "load_data",
    "prepare_data",
]
