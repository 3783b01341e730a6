"""hpo: hyperparameter optimization for GPU training on Optuna and PyTorch.

The Python API is :func:`run` and :func:`load` (see :mod:`hpo.api`); importing hpo is cheap,
torch and Optuna are imported when a function needs them.
"""

from __future__ import annotations

from hpo.api import Best, RunOutcome, Status, StudyView, load, run
from hpo.checkpoints import Checkpoint, checkpoint
from hpo.errors import HpoError, SpecError, StorageError

__version__ = "0.1.0"
__all__ = [
    "Best",
    "Checkpoint",
    "HpoError",
    "RunOutcome",
    "SpecError",
    "Status",
    "StorageError",
    "StudyView",
    "__version__",
    "checkpoint",
    "load",
    "run",
]
