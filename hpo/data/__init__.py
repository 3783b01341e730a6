"""Dataset registry: name -> builder of a train/validation pair.

Builders import torch lazily so that reading the registry (spec validation) stays cheap.
"""

from __future__ import annotations

from hpo.data._registry import DATASETS, DataBundle, DataOptions, load_data, prepare_data

__all__ = ["DATASETS", "DataBundle", "DataOptions", "load_data", "prepare_data"]
