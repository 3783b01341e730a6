"""Starting and supervising this node's worker processes (it never initialises CUDA)."""

from __future__ import annotations

from hpo.dispatch.plan import WorkerPlan, detect_gpus, plan_workers
from hpo.dispatch.run import Observer, RunOptions, RunResult, run_study
from hpo.dispatch.supervisor import Supervisor

__all__ = [
    "Observer",
    "RunOptions",
    "RunResult",
    "Supervisor",
    "WorkerPlan",
    "detect_gpus",
    "plan_workers",
    "run_study",
]
