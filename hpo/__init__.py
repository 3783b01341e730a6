"""hpo: hyperparameter optimization for GPU training on Optuna and PyTorch."""

from __future__ import annotations

from hpo.checkpoints import Checkpoint, checkpoint

__version__ = "0.1.0"
__all__ = ["Checkpoint", "__version__", "checkpoint"]
