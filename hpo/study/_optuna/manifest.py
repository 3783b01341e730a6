"""Every Optuna name hpo relies on that Optuna does not promise, as plain data.

``tests/test_optuna_contract.py`` checks each entry against the installed Optuna (the name
imports, the attribute exists on a live object, the signature has these parameters, the column
is in Optuna's table metadata) and scans hpo for private names not listed here. A new Optuna
release is thus one test run away from a list of what moved. The comments say what each name is
for; the package docstring (``hpo.study._optuna``) says why hpo needs it at all.
"""

from __future__ import annotations

from hpo.study._optuna.keys import ARTIFACT_PREFIX, FAILED_TRIAL, FIXED_PARAMS, RETRY_HISTORY

#: Optuna modules with a private name in their path, or private names hpo imports from a module,
#: or reaches as an attribute of one: module -> names.
PRIVATE_MODULES: dict[str, tuple[str, ...]] = {
    # trial_cache: TrialCache subclasses the per-process cache and creates its per-study record
    "optuna.storages._cached_storage": ("_CachedStorage", "_StudyInfo"),
    # sql_reads, sql_writes: Optuna's tables, for raw statements and rows built from them
    "optuna.storages._rdb": ("models",),
    "optuna.storages._rdb.models": ("BaseModel", "TrialValueModel", "TrialIntermediateValueModel"),
    # objects.heartbeat_thread: the heartbeat of trials hpo claims itself
    "optuna.storages._heartbeat": ("get_heartbeat_thread",),
    # tpe: Optuna's own estimator and scoring, so the suggestions stay Optuna's, bit for bit
    "optuna.samplers._tpe.parzen_estimator": ("_ParzenEstimator",),
    "optuna.samplers._tpe.sampler": ("_get_pruned_trial_score", "default_gamma"),
    # hyperband: Optuna's rung bookkeeping, so a plain Optuna process prunes alike
    "optuna.pruners._successive_halving": ("_completed_rung_key", "_get_current_rung"),
}

#: Optuna classes (public or private) -> the attributes and methods hpo reads, calls, assigns
#: or overrides that Optuna does not promise (private names, or any name of a private class).
PRIVATE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    # objects (for tpe, mftpe, hyperband, trial_cache): a study's storage and row id, its
    # per-thread snapshot of the trials (what samplers read), Optuna's claim of a WAITING trial
    "optuna.study.Study": (
        "_storage",
        "_study_id",
        "_thread_local",
        "_get_trials",
        "_pop_waiting_trial_id",
    ),
    # objects.forget_trials: the snapshot Study.ask drops once per trial
    "optuna.study.study._ThreadLocalStudyAttribute": ("cached_all_trials",),
    # objects, trial_cache, hyperband: the trial's row id; the copy Trial.set_user_attr updates
    "optuna.trial.Trial": ("_trial_id", "_cached_frozen_trial"),
    "optuna.trial.FrozenTrial": ("_trial_id",),
    # tpe (FastTPESampler overrides _sample and _sample_relative), mftpe (overrides _sample):
    # TPE's settings and its own steps, so the fast path suggests what Optuna suggests
    "optuna.samplers.TPESampler": (
        "_sample",
        "_sample_relative",
        "_compare",
        "_compute_acquisition_func",
        "_build_parzen_estimator",
        "_get_params",
        "_gamma",
        "_n_ei_candidates",
        "_n_startup_trials",
        "_rng",
        "_random_sampler",
        "_parzen_estimator_cls",
        "_parzen_estimator_parameters",
        "_constant_liar",
        "_warn_independent_sampling",
    ),
    # tpe, mftpe: the random state TPE draws its candidates from (TPESampler._rng)
    "optuna.samplers._lazy_random_state.LazyRandomState": ("rng",),
    # hyperband: each bracket's settings, for the rung at which a trial is compared
    "optuna.pruners.SuccessiveHalvingPruner": (
        "_min_resource",
        "_reduction_factor",
        "_min_early_stopping_rate",
        "_bootstrap_count",
    ),
    # hyperband: the brackets, set up as Optuna does; FastAshaPruner presets _n_brackets = 1,
    # which _try_initialization keeps (one bracket: ASHA)
    "optuna.pruners.HyperbandPruner": (
        "_pruners",
        "_n_brackets",
        "_try_initialization",
        "_get_bracket_id",
    ),
    # trial_cache (TrialCache overrides _add_trials_to_cache), objects.backend_of and
    # objects.stale_trial_ids (by getattr): the cache's state and its refresh
    "optuna.storages._cached_storage._CachedStorage": (
        "_backend",
        "_lock",
        "_studies",
        "_trial_id_to_study_id_and_number",
        "_read_trials_from_remote_storage",
        "_add_trials_to_cache",
        "_get_stale_trial_ids",
    ),
    # trial_cache: what the cache has read of a study (which trials to read again)
    "optuna.storages._cached_storage._StudyInfo": (
        "trials",
        "unfinished_trial_ids",
        "last_finished_trial_id",
    ),
    # sql_reads (TrialReads overrides _get_trials), resilient (wraps each one of these with the
    # outage retry: _CachedStorage calls them), objects.stale_trial_ids (by getattr)
    "optuna.storages.RDBStorage": (
        "_get_trials",
        "_create_new_trial",
        "_get_best_trial_id",
        "_set_trial_param",
        "_get_stale_trial_ids",
    ),
    # sql_reads, sql_writes: the table metadata and how Optuna stores inf and nan
    "optuna.storages._rdb.models.BaseModel": ("metadata",),
    "optuna.storages._rdb.models.TrialValueModel": (
        "TrialValueType",
        "value_to_stored_repr",
        "stored_repr_to_value",
    ),
    "optuna.storages._rdb.models.TrialIntermediateValueModel": (
        "TrialIntermediateValueType",
        "intermediate_value_to_stored_repr",
        "stored_repr_to_intermediate_value",
    ),
}

#: Each private function hpo calls and each private method it calls or overrides (and the
#: constructors of the private classes it builds or subclasses) -> its parameter names, as
#: ``inspect.signature`` gives them (a classmethod or staticmethod without ``cls``).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "optuna.study.Study._get_trials": ("self", "deepcopy", "states", "use_cache"),
    "optuna.study.Study._pop_waiting_trial_id": ("self",),
    "optuna.samplers.TPESampler._sample": ("self", "study", "trial", "search_space"),
    "optuna.samplers.TPESampler._sample_relative": ("self", "study", "trial", "search_space"),
    "optuna.samplers.TPESampler._compare": ("samples", "acquisition_func_vals"),
    "optuna.samplers.TPESampler._compute_acquisition_func": (
        "self",
        "samples",
        "mpe_below",
        "mpe_above",
    ),
    "optuna.samplers.TPESampler._build_parzen_estimator": (
        "self",
        "study",
        "search_space",
        "trials",
        "handle_below",
    ),
    "optuna.samplers.TPESampler._get_params": ("self", "trial", "study"),
    "optuna.samplers._tpe.sampler._get_pruned_trial_score": ("trial", "study"),
    "optuna.samplers._tpe.sampler.default_gamma": ("x",),
    "optuna.samplers._tpe.parzen_estimator._ParzenEstimator.__init__": (
        "self",
        "observations",
        "search_space",
        "parameters",
        "predetermined_weights",
    ),
    "optuna.samplers._tpe.parzen_estimator._ParzenEstimator.sample": ("self", "rng", "size"),
    "optuna.pruners._successive_halving._completed_rung_key": ("rung",),
    "optuna.pruners._successive_halving._get_current_rung": ("trial",),
    "optuna.pruners.HyperbandPruner._try_initialization": ("self", "study"),
    "optuna.pruners.HyperbandPruner._get_bracket_id": ("self", "study", "trial"),
    "optuna.storages._cached_storage._CachedStorage.__init__": ("self", "backend"),
    "optuna.storages._cached_storage._CachedStorage._add_trials_to_cache": (
        "self",
        "study_id",
        "trials",
    ),
    "optuna.storages._cached_storage._CachedStorage._read_trials_from_remote_storage": (
        "self",
        "study_id",
    ),
    "optuna.storages._cached_storage._CachedStorage._get_stale_trial_ids": ("self", "study_id"),
    "optuna.storages._cached_storage._StudyInfo.__init__": ("self",),
    "optuna.storages.RDBStorage._get_trials": (
        "self",
        "study_id",
        "states",
        "included_trial_ids",
        "trial_id_greater_than",
    ),
    "optuna.storages.RDBStorage._create_new_trial": ("self", "study_id", "template_trial"),
    "optuna.storages.RDBStorage._get_best_trial_id": ("self", "study_id", "direction"),
    "optuna.storages.RDBStorage._set_trial_param": (
        "self",
        "trial_id",
        "param_name",
        "param_value_internal",
        "distribution",
        "previous_distribution",
    ),
    "optuna.storages.RDBStorage._get_stale_trial_ids": ("self", "study_id"),
    "optuna.storages._heartbeat.get_heartbeat_thread": ("trial_id", "storage"),
    "optuna.storages._rdb.models.TrialValueModel.value_to_stored_repr": ("value",),
    "optuna.storages._rdb.models.TrialValueModel.stored_repr_to_value": ("value", "float_type"),
    "optuna.storages._rdb.models.TrialIntermediateValueModel.intermediate_value_to_stored_repr": (
        "value",
    ),
    "optuna.storages._rdb.models.TrialIntermediateValueModel.stored_repr_to_intermediate_value": (
        "value",
        "float_type",
    ),
}

#: Optuna's tables -> the columns hpo's raw statements read or write (sql_reads, sql_writes),
#: the first one the table's primary key (the insertion order sql_reads sorts related rows by).
TABLES: dict[str, tuple[str, ...]] = {
    "studies": ("study_id",),
    "study_system_attributes": ("study_system_attribute_id", "study_id", "key", "value_json"),
    "trials": ("trial_id", "number", "study_id", "state", "datetime_start", "datetime_complete"),
    "trial_params": ("param_id", "trial_id", "param_name", "param_value", "distribution_json"),
    "trial_values": ("trial_value_id", "trial_id", "objective", "value", "value_type"),
    "trial_intermediate_values": (
        "trial_intermediate_value_id",
        "trial_id",
        "step",
        "intermediate_value",
        "intermediate_value_type",
    ),
    "trial_user_attributes": ("trial_user_attribute_id", "trial_id", "key", "value_json"),
    "trial_system_attributes": ("trial_system_attribute_id", "trial_id", "key", "value_json"),
}

#: The unique keys hpo's upserts name in ``ON CONFLICT (...)`` (sql_writes): table -> columns.
UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "trial_intermediate_values": ("trial_id", "step"),
    "trial_user_attributes": ("trial_id", "key"),
    "trial_system_attributes": ("trial_id", "key"),
}

#: ``trials.state`` values hpo's raw statements name.
TRIAL_STATES: tuple[str, ...] = ("WAITING", "RUNNING")

#: Attr keys whose meaning Optuna defines (``keys``; the rung prefix is ``hyperband._RUNG``):
#: what Optuna writes or reads under them -> the key.
ATTR_KEYS: dict[str, str] = {
    "RetryHeartbeatStaleTrialCallback: the trial a retry re-runs": FAILED_TRIAL,
    "RetryHeartbeatStaleTrialCallback: every earlier attempt": RETRY_HISTORY,
    "Study.enqueue_trial: a WAITING trial's fixed params": FIXED_PARAMS,
    "optuna.artifacts.upload_artifact: prefix of an artifact's link": ARTIFACT_PREFIX,
    "SuccessiveHalvingPruner: prefix of a trial's rung value": "completed_rung_",
}

#: All of the above, by kind.
MANIFEST: dict[str, object] = {
    "private_modules": PRIVATE_MODULES,
    "private_attributes": PRIVATE_ATTRIBUTES,
    "signatures": SIGNATURES,
    "tables": TABLES,
    "unique_keys": UNIQUE_KEYS,
    "trial_states": TRIAL_STATES,
    "attr_keys": ATTR_KEYS,
}
