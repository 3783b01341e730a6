"""hpo: hyperparameter optimization for GPU training on Optuna and PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
