"""Optuna study plumbing: storage, samplers, pruners, the trial budget, create or join."""

from __future__ import annotations

from hpo.study.budget import (
    budget_used,
    claim,
    get_budget,
    is_retry,
    next_trial,
    refill,
    requeue,
    set_budget,
)
from hpo.study.search import build_pruner, build_sampler, suggest, worker_seed
from hpo.study.session import StudyHandle, check_compatible, load, prepare
from hpo.study.storage import (
    ENV_STORAGE,
    open_storage,
    quiet_optuna,
    redact,
    resolve_storage_url,
    study_lock,
)
from hpo.study.summary import Snapshot, snapshot

__all__ = [
    "ENV_STORAGE",
    "StudyHandle",
    "budget_used",
    "build_pruner",
    "build_sampler",
    "check_compatible",
    "claim",
    "get_budget",
    "is_retry",
    "next_trial",
    "refill",
    "load",
    "open_storage",
    "prepare",
    "quiet_optuna",
    "redact",
    "requeue",
    "set_budget",
    "Snapshot",
    "snapshot",
    "resolve_storage_url",
    "study_lock",
    "suggest",
    "worker_seed",
]
