"""Creating or joining a study, refusing a spec that conflicts with what the storage holds."""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpo.errors import StorageError, StudyConflictError
from hpo.keys import ATTR_DESCRIPTION, ATTR_METRIC, ATTR_OBJECTIVE, ATTR_SPACE, ATTR_WORKERS
from hpo.spec import StudySpec
from hpo.study._optuna import storage_of, study_id_of
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study._optuna.trial_cache import TrialCache
from hpo.study.claims import budget
from hpo.study.claims.epochs import raise_epoch_budget, read_epochs
from hpo.study.search import warm
from hpo.study.search.build import build_pruner, build_sampler
from hpo.study.storage.connect import Storage, open_storage, redact, schema_lock, study_lock

log = logging.getLogger(__name__)


def _fingerprint(spec: StudySpec) -> dict[str, str]:
    space = {k: v.model_dump(mode="json") for k, v in spec.space.items()}
    names = [m.name for m in spec.metrics]
    return {
        # One metric: its name (as before multi-objective studies); several: a JSON list.
        ATTR_METRIC: json.dumps(names) if spec.multi_objective else names[0],
        ATTR_SPACE: json.dumps(space, sort_keys=True),
    }


def _directions(spec: StudySpec) -> list[StudyDirection]:
    return [
        StudyDirection.MAXIMIZE if m.direction == "maximize" else StudyDirection.MINIMIZE
        for m in spec.metrics
    ]


def check_compatible(storage: Storage, study_id: int, spec: StudySpec, source: str) -> None:
    """Raise StudyConflictError when the stored study disagrees with ``spec``; writes nothing."""
    stored_dir = storage.get_study_directions(study_id)
    wanted = _directions(spec)
    if len(stored_dir) != len(wanted):
        raise StudyConflictError(
            f"{source}: metric: study {spec.name!r} in the storage has {len(stored_dir)} "
            f"metric(s), the spec {len(wanted)} (use another name, or the study's original spec)"
        )
    if stored_dir != wanted:
        shown = ", ".join(d.name.lower() for d in stored_dir)
        said = ", ".join(m.direction for m in spec.metrics)
        raise StudyConflictError(
            f"{source}: metric.direction: study {spec.name!r} in the storage is "
            f"{shown}, the spec says {said}"
        )
    attrs = storage.get_study_system_attrs(study_id)
    for key, value in _fingerprint(spec).items():
        if key in attrs and attrs[key] != value:
            what = "metric.name" if key == ATTR_METRIC else "space"
            raise StudyConflictError(
                f"{source}: {what}: differs from study {spec.name!r} already in the storage "
                f"(use another name, or the study's original spec)"
            )


@dataclass
class StudyHandle:
    """An open study with the storage it lives in."""

    study: optuna.Study
    storage: Storage
    created: bool
    worker_number: int | None = None  # this worker's registration (see register_worker)
    warm_start: str | None = None  # what this call's warm start added (it created the study)


def prepare(
    spec: StudySpec, url: str, n_trials: int | None = None, source: str = "spec"
) -> StudyHandle:
    """Create the study (or join it), then raise its trial and epoch budgets to what is asked.

    Everything from creating Optuna's tables to setting the budget happens under the
    database's schema lock, so any number of nodes started at one instant agree: exactly one
    creates the study (and adds its warm start, :mod:`hpo.study.search.warm`), the others join it or
    (with a different spec) are refused.

    Raises:
        StudyConflictError: the storage holds a study of this name with another spec.
        SpecError: the warm start cannot be used (nothing is written then either).
    """
    with schema_lock(url, spec.retry.storage_outage):
        storage = open_storage(url, spec.retry)
        try:
            study_id: int | None = storage.get_study_id_from_name(spec.name)
        except KeyError:
            study_id = None
        plan = None
        if study_id is not None:
            check_compatible(storage, study_id, spec, source)
            _note_late_warm_start(storage, study_id, spec)
        elif spec.warm_start is not None:
            plan = warm.plan(spec, url, storage, source)  # reads only; refuses before writing
        created = study_id is None and _create(storage, spec)
        study = optuna.create_study(
            storage=storage,
            study_name=spec.name,
            directions=[m.direction for m in spec.metrics],
            sampler=build_sampler(spec),
            pruner=build_pruner(spec),
            load_if_exists=True,
        )
        if study_id is None:
            recorded = {ATTR_DESCRIPTION: spec.description, ATTR_OBJECTIVE: spec.objective or ""}
            for key, value in {**_fingerprint(spec), **recorded}.items():
                storage.set_study_system_attr(study_id_of(study), key, value)
        if study.metric_names is None:  # new, or created by an hpo that did not name it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # optuna-dashboard, the `optuna` CLI and plots label the values by these
                study.set_metric_names([m.name for m in spec.metrics])
        raised = budget.raise_budget(study, n_trials or spec.n_trials, explicit=bool(n_trials))
        if spec.budget.max_epochs_total is not None:
            raise_epoch_budget(study, storage, spec.budget.max_epochs_total)
        added = warm.apply(study, storage, plan, budget.get_budget(study)) if plan else None
    epochs = read_epochs(storage, study_id_of(study))
    if epochs is None or not epochs.spent:  # a spent study gets no more waiting trials
        # Behind a proxy no lock is shared: of nodes started at one instant (each sees the
        # study new) only the one whose create won fills the pool, whoever set the budget
        # first; later, a node given --n-trials that raised it.
        budget.refill(study, storage, spec, force=created or (raised and bool(n_trials)))
    return StudyHandle(study, storage, created=study_id is None, warm_start=added)


def _create(storage: Storage, spec: StudySpec) -> bool:
    """Create the study; False when another node's create won (the storage's unique name is
    the one atomic step a gRPC proxy offers)."""
    directions = [StudyDirection[m.direction.upper()] for m in spec.metrics]
    try:
        storage.create_new_study(directions, spec.name)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


def _note_late_warm_start(storage: Storage, study_id: int, spec: StudySpec) -> None:
    """A warm start applies when a study is created: say so when the spec asks for one and
    the existing study never had it (it was created from a spec without ``warm_start``)."""
    if spec.warm_start is not None and budget.ATTR_WARM not in storage.get_study_system_attrs(
        study_id
    ):
        log.warning(
            "study %r already exists without a warm start: warm_start applies only when a "
            "study is created, and is ignored",
            spec.name,
        )


def load(spec: StudySpec, url: str) -> StudyHandle:
    """Load an existing study for a worker, with a sampler seed no other worker has had.

    On a database the study reads through a :class:`TrialCache` (finished trials read once,
    the worker's own running trial answered locally); ``handle.storage`` stays the database.
    """
    storage = open_storage(url, spec.retry, create_tables=False)
    cache = TrialCache(storage) if isinstance(storage, UpsertWrites) else None
    study_id = storage.get_study_id_from_name(spec.name)
    number = register_worker(storage, study_id, spec.name)
    study = optuna.load_study(
        study_name=spec.name,
        storage=cache or storage,
        sampler=build_sampler(spec, number),
        pruner=build_pruner(spec),
    )
    if cache is not None:
        cache.refresh(study_id_of(study))  # the one full read of the study, before any trial
    return StudyHandle(study, storage, created=False, worker_number=number)


def register_worker(storage: Storage, study_id: int, name: str) -> int:
    """Claim the study's next worker registration number (0, 1, 2, ...), which seeds this
    worker's sampler: distinct across workers, nodes, re-runs and restarts.

    Behind a gRPC proxy, where no lock is shared, a random 62-bit number stands in.
    """
    with study_lock(storage, name) as locked:
        if not locked:
            return int.from_bytes(os.urandom(8), "big") >> 2
        number = int(storage.get_study_system_attrs(study_id).get(ATTR_WORKERS, 0))
        storage.set_study_system_attr(study_id, ATTR_WORKERS, number + 1)
    return number


def system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attrs (``hpo:metric``, ``hpo:nodes``, ...); Optuna 5 has no accessor."""
    return storage_of(study).get_study_system_attrs(study_id_of(study))


def metric_names(study: optuna.Study) -> list[str]:
    """The names of the study's values: Optuna's metric names, else (a study created before
    hpo named them) ``hpo:metric``, else ``value``/``value 0``, ``value 1``, ...."""
    if study.metric_names:
        return list(study.metric_names)
    n = len(study.directions)
    stored = system_attrs(study).get(ATTR_METRIC)
    if n == 1:
        return [str(stored or "value")]
    return [f"value {i}" for i in range(n)]


def find(name: str, url: str) -> optuna.Study:
    """Open the existing study ``name`` for reading (status, report, export).

    Raises:
        StorageError: no such study (the message lists the studies the storage holds), or an
            SQLite file that does not exist (which would otherwise be created empty).
    """
    try:
        db = make_url(url).database if url.startswith("sqlite") else None
    except ArgumentError:
        db = None  # open_storage says what is wrong with the URL
    if db and db != ":memory:" and not Path(db).exists():
        raise StorageError(f"no study {name!r}: {db} does not exist")
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        known = f"studies there: {', '.join(names)}" if names else "it holds no study"
        raise StorageError(f"no study {name!r} in {redact(url)} ({known})") from None
