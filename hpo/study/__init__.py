"""Optuna study plumbing: storage, samplers, pruners, the trial budget, create or join."""

from __future__ import annotations

from hpo.study.budget import (
    budget_used,
    claim,
    get_budget,
    is_retry,
    is_warm,
    next_trial,
    raise_budget,
    refill,
    requeue,
    set_budget,
)
from hpo.study.notes import ATTR_NODES, describe_setup, record_node, redact_command
from hpo.study.retry import enqueue_retry, fail_stale
from hpo.study.search import build_pruner, build_sampler, suggest, worker_seed
from hpo.study.session import (
    ATTR_DESCRIPTION,
    ATTR_METRIC,
    StudyHandle,
    check_compatible,
    find,
    load,
    metric_names,
    prepare,
    register_worker,
    system_attrs,
)
from hpo.study.storage import (
    ENV_STORAGE,
    connection_headroom,
    open_storage,
    quiet_optuna,
    redact,
    resolve_storage_url,
    schema_lock,
    study_lock,
)
from hpo.study.summary import Snapshot, own_best, own_front, slot_counts, snapshot

__all__ = [
    "ATTR_DESCRIPTION",
    "ATTR_METRIC",
    "ATTR_NODES",
    "ENV_STORAGE",
    "StudyHandle",
    "budget_used",
    "build_pruner",
    "build_sampler",
    "check_compatible",
    "claim",
    "get_budget",
    "find",
    "is_retry",
    "is_warm",
    "next_trial",
    "raise_budget",
    "register_worker",
    "fail_stale",
    "enqueue_retry",
    "schema_lock",
    "connection_headroom",
    "refill",
    "load",
    "metric_names",
    "open_storage",
    "own_best",
    "own_front",
    "prepare",
    "quiet_optuna",
    "record_node",
    "describe_setup",
    "redact",
    "redact_command",
    "requeue",
    "set_budget",
    "Snapshot",
    "snapshot",
    "slot_counts",
    "resolve_storage_url",
    "study_lock",
    "system_attrs",
    "suggest",
    "worker_seed",
]
