"""The trainer: ``fit(config, device, on_epoch, ...) -> TrainResult``. It knows nothing of Optuna.

``fit`` and ``TrainResult`` import torch, so they load on first use: reading a study spec
(which embeds :class:`TrainConfig`) stays free of the torch import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.trainer.config import METRICS, TrainConfig
from hpo.trainer.oom import is_oom

if TYPE_CHECKING:
    from hpo.trainer.distributed import Group
    from hpo.trainer.loop import CheckpointCallback, EpochCallback, TrainResult, fit
    from hpo.trainer.runtime import CUBLAS_ENV

__all__ = [
    "CUBLAS_ENV",
    "METRICS",
    "CheckpointCallback",
    "EpochCallback",
    "Group",
    "TrainConfig",
    "TrainResult",
    "fit",
    "is_oom",
]


def __getattr__(name: str) -> Any:
    if name in ("CheckpointCallback", "EpochCallback", "TrainResult", "fit"):
        from hpo.trainer import loop

        return getattr(loop, name)
    if name == "Group":
        from hpo.trainer import distributed

        return distributed.Group
    if name == "CUBLAS_ENV":
        from hpo.trainer import runtime

        return runtime.CUBLAS_ENV
    raise AttributeError(name)
