"""Early stopping: the run ends when the monitored metric has not improved for ``patience``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """Tracks the best epoch of ``metric``; ``update`` says when to stop.

    With ``patience=None`` it only tracks the best epoch and never stops the run.
    """

    metric: str = "val_loss"
    direction: str = "minimize"
    patience: int | None = None
    min_delta: float = 0.0
    best_value: float = math.nan
    best_epoch: int = 0
    stopped: bool = False

    def _improves(self, value: float) -> bool:
        if math.isnan(self.best_value):
            return not math.isnan(value)
        if self.direction == "maximize":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record ``epoch``'s metrics; True when the run should stop after this epoch."""
        value = metrics[self.metric]
        if self._improves(value):
            self.best_value, self.best_epoch = value, epoch
        elif self.patience is not None and epoch - self.best_epoch >= self.patience:
            self.stopped = True
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
