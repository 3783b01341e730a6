"""Optuna study plumbing: the front door for the rest of hpo.

- ``storage/``: opening the storage URL, creation locks, riding out outages;
- ``claims/``: the trial budget and its claims, the epoch budget, retries of lost trials;
- ``search/``: the sampler and pruner a spec names, warm starts, ranking;
- ``_optuna/``: everything built on Optuna's internals (the boundary; see its docstring);
- ``handle.py`` (create or join a study), ``summary.py``, ``notes.py``, ``artifacts.py``.
"""

from __future__ import annotations

from hpo.study._optuna import FAILED_TRIAL, trial_id_of
from hpo.study._optuna import frozen as frozen_trial
from hpo.study._optuna.trial_cache import set_user_attrs
from hpo.study.artifacts import (
    TrialFiles,
    download_best,
    open_store,
    resolve_artifacts,
    root_number,
)
from hpo.study.claims.budget import (
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
from hpo.study.claims.epochs import (
    EPOCH_BUDGET_SPENT,
    EpochCount,
    EpochMeter,
    epoch_count,
    raise_epoch_budget,
)
from hpo.study.claims.retry import enqueue_retry, fail_stale, heartbeat
from hpo.study.handle import (
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
from hpo.study.notes import ATTR_NODES, describe_setup, record_node, redact_command
from hpo.study.search.build import build_pruner, build_sampler, suggest, worker_seed
from hpo.study.search.warm import check as check_warm_start
from hpo.study.storage.connect import (
    ENV_STORAGE,
    behind_pooler,
    connection_headroom,
    open_storage,
    quiet_optuna,
    redact,
    resolve_storage_url,
    schema_lock,
    study_lock,
)
from hpo.study.storage.proxy import NODE_LOSS_WARNING
from hpo.study.storage.proxy import serve as serve_proxy
from hpo.study.storage.turns import between_trials
from hpo.study.summary import (
    STATES,
    Snapshot,
    own_best,
    own_front,
    slot_counts,
    slot_line,
    snapshot,
)

__all__ = [
    "STATES",
    "slot_line",
    "FAILED_TRIAL",
    "check_warm_start",
    "serve_proxy",
    "TrialFiles",
    "download_best",
    "frozen_trial",
    "heartbeat",
    "open_store",
    "resolve_artifacts",
    "root_number",
    "set_user_attrs",
    "trial_id_of",
    "EPOCH_BUDGET_SPENT",
    "EpochCount",
    "EpochMeter",
    "epoch_count",
    "raise_epoch_budget",
    "ATTR_DESCRIPTION",
    "ATTR_METRIC",
    "ATTR_NODES",
    "ENV_STORAGE",
    "StudyHandle",
    "budget_used",
    "between_trials",
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
    "NODE_LOSS_WARNING",
    "behind_pooler",
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
