"""The Optuna boundary: everything hpo builds on Optuna's internals, and nothing else.

Optuna promises its public API; hpo's speed-ups also stand on names it does not promise. They
all live in this package, behind small named functions, so that a new Optuna release is checked
in one place (``tests/test_optuna_contract.py``) and switched off in one place
(``HPO_FAST_PATHS=0``, or an Optuna release outside the tested range: ``fast_paths``).
Outside this package hpo uses only Optuna's public API.

What it relies on, and why:

- ``optuna.storages._cached_storage._CachedStorage`` (``trial_cache.TrialCache`` subclasses it):
  the per-process cache of finished trials, extended with an append-only finished-trial log and
  a write-through copy of the trials this process runs. Relies on its ``_backend``, ``_lock``,
  ``_studies`` (``_StudyInfo``), ``_trial_id_to_study_id_and_number``,
  ``_read_trials_from_remote_storage`` and ``_add_trials_to_cache``.
- ``optuna.storages._rdb.models`` and Optuna's table layout (``sql_reads``, ``sql_writes``):
  a refresh in two statements instead of seven, one-statement reports, attrs and claims, bulk
  inserts of waiting trials. ``TrialReads`` overrides ``RDBStorage._get_trials``; the outage
  wrapper (``resilient``) wraps RDBStorage's private methods that ``_CachedStorage`` calls.
- ``optuna.samplers._tpe`` (``tpe.FastTPESampler``, ``mftpe``): ``_ParzenEstimator``,
  ``_get_pruned_trial_score``, ``default_gamma``, and ``TPESampler``'s ``_sample``,
  ``_sample_relative``, ``_compare`` and its private settings: TPE's observations kept per
  study and extended from the finished-trial log instead of rebuilt from every trial.
- ``optuna.pruners._successive_halving`` (``hyperband``): ``_completed_rung_key``,
  ``_get_current_rung`` and the settings of ``SuccessiveHalvingPruner`` / ``HyperbandPruner``:
  the rung decisions made from an index of rung values instead of a scan of every trial.
- ``optuna.storages._heartbeat.get_heartbeat_thread`` (``objects``): the heartbeat of trials
  hpo claims itself, as ``Study.optimize`` does for the trials it asks for.
- ``Study._storage``, ``_study_id``, ``_thread_local``, ``_get_trials``,
  ``_pop_waiting_trial_id``; ``Trial._trial_id``, ``_cached_frozen_trial``;
  ``FrozenTrial._trial_id`` (``objects``): claiming trials from the budget pool as
  ``Study.ask`` does, and writing a trial's rows directly.
- Attr keys whose meaning Optuna defines (``keys``): ``failed_trial``, ``retry_history``,
  ``fixed_params``, ``completed_rung_N``, ``artifacts:``.

``MANIFEST`` lists each of these names; the contract test checks every one against the
installed Optuna and checks that no other private name is used anywhere in hpo.
"""

from __future__ import annotations

from hpo.study._optuna.keys import ARTIFACT_PREFIX, FAILED_TRIAL, FIXED_PARAMS, RETRY_HISTORY
from hpo.study._optuna.manifest import MANIFEST as MANIFEST
from hpo.study._optuna.objects import (
    backend_of,
    forget_trials,
    frozen,
    heartbeat_thread,
    is_multi_objective,
    pop_waiting,
    stale_trial_ids,
    storage_of,
    study_id_of,
    trial_id_of,
    trials,
)

__all__ = [
    "ARTIFACT_PREFIX",
    "FAILED_TRIAL",
    "FIXED_PARAMS",
    "RETRY_HISTORY",
    "backend_of",
    "forget_trials",
    "frozen",
    "heartbeat_thread",
    "is_multi_objective",
    "pop_waiting",
    "stale_trial_ids",
    "storage_of",
    "study_id_of",
    "trial_id_of",
    "trials",
]
