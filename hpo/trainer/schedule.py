"""The learning-rate schedule, stepped after every optimizer step: the only writer of the LR.

Warm-up rises linearly to the peak over ``warmup_epochs``; then ``cosine`` or ``linear`` falls
to ``peak * lrf`` exactly at the phase's last optimizer step, and ``constant`` stays at the peak.
Each parameter group's LR is ``peak * group['lr_scale'] * factor``: ``lr_scale`` carries the
layer-wise decay, so one schedule drives every stage.

Nothing else sets an LR: the parameter groups carry only ``lr_scale``, the optimizer is built
with a placeholder (:data:`hpo.trainer.optim.PLACEHOLDER_LR`), and :meth:`Schedule.apply` runs
when a phase's schedule is built (before its first step), after every optimizer step, and after
a checkpoint's optimizer state (which holds the LRs it was saved with) is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Schedule:
    """The LR of each optimizer step of one training phase (``total`` steps from ``peak``)."""

    kind: str
    peak: float
    lrf: float
    total: int
    warmup: int = 0
    step: int = 0

    def __post_init__(self) -> None:
        self.total = max(1, self.total)
        self.warmup = min(self.warmup, self.total - 1)

    def factor(self, step: int) -> float:
        """The multiplier of ``peak`` at optimizer step ``step`` (0-based)."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - 1 - self.warmup))
        if self.kind == "cosine":
            return self.lrf + (1 - self.lrf) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "linear":
            return 1 - (1 - self.lrf) * progress
        raise ValueError(f"unknown schedule {self.kind!r}")

    @property
    def last_lr(self) -> float:
        """The head's LR at the most recent optimizer step (the peak before any step)."""
        return self.peak * self.factor(max(0, self.step - 1))

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """Set every group's LR for the current step."""
        lr = self.peak * self.factor(self.step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def advance(self, optimizer: torch.optim.Optimizer) -> None:
        """Move to the next step and set its LRs (call after ``optimizer.step()``)."""
        self.step += 1
        self.apply(optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
