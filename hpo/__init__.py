"""hpo: hyperparameter optimization for GPU training on Optuna and PyTorch.

The Python API is :func:`run`, :func:`load` and :func:`validate` (see :mod:`hpo.api`, which
also has ``dashboard`` and ``proxy``); importing hpo is cheap, torch and Optuna are imported
when a function needs them.
"""

from __future__ import annotations

from hpo.api import Best, ParetoTrial, RunOutcome, Status, StudyView, load, run, validate
from hpo.board import tensorboard
from hpo.checkpoints import Checkpoint, checkpoint
from hpo.errors import HpoError, SpecError, StorageError

__version__ = "0.1.0"
__all__ = [
    "Best",
    "Checkpoint",
    "HpoError",
    "ParetoTrial",
    "RunOutcome",
    "SpecError",
    "Status",
    "StorageError",
    "StudyView",
    "__version__",
    "checkpoint",
    "load",
    "run",
    "tensorboard",
    "validate",
]
