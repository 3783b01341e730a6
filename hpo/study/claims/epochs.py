"""The epoch budget (``budget.max_epochs_total``): epochs trained over the whole study, by every
worker on every node, counted in the storage.

Two study system attrs: the budget, ``hpo:max_epochs_total`` (it only grows, like
``hpo:n_trials``), and the count, ``hpo:epochs``. A worker adds one to the count for each epoch
it trains, as the epoch is reported (one ``UPDATE ... RETURNING`` that also reads the budget),
and reads both before it claims a trial. Workers of a study without an epoch budget never
count, so it costs them nothing.

What counts is training done, whatever became of the trial:

- every epoch a trial trained and reported: completed, pruned, failed or interrupted later;
- an epoch trained again counts again (a retry that starts over, a restart after an OOM);
- not the epochs a retry replays from its predecessor's checkpoint (trained once, counted
  once), nor an epoch cut short by Ctrl-C or a preemption (not finished, not reported).

Once the count reaches the budget no worker claims a trial, and a running trial stops at its
next epoch boundary (see :class:`EpochMeter`). Each worker can finish at most one epoch past
the budget (the one it was training when another worker's epoch reached it), and the worker
whose epoch reached it finishes none: with ``W`` workers at once, over all nodes, the count
ends at most ``W - 1`` above the budget. The count and the check are atomic in PostgreSQL and
SQLite; behind a gRPC proxy (or on another database) they are a read and a write, and workers
that finish epochs at the same moment may count one of them once only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from hpo.keys import ATTR_EPOCH_BUDGET, ATTR_EPOCHS
from hpo.study._optuna import backend_of, storage_of, study_id_of
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study.storage.connect import Storage, study_lock

log = logging.getLogger(__name__)

#: ``user_attrs['stop_reason']`` of a trial stopped because the epoch budget was spent.
EPOCH_BUDGET_SPENT = "epoch budget spent"


@dataclass(frozen=True)
class EpochCount:
    """Epochs trained in the study so far, and its epoch budget."""

    used: int
    budget: int

    @property
    def spent(self) -> bool:
        return self.used >= self.budget


def _backend(storage: Any) -> UpsertWrites | None:
    """The database storage with hpo's one-statement operations, if there is one (behind
    Optuna's or hpo's per-process cache)."""
    backend = backend_of(storage)
    return backend if isinstance(backend, UpsertWrites) and backend.upserts else None


def _attrs(storage: Any, study_id: int) -> dict[str, Any]:
    db = _backend(storage)
    if db is not None:
        return db.study_system_attrs_of(study_id, [ATTR_EPOCH_BUDGET, ATTR_EPOCHS])
    return dict(storage.get_study_system_attrs(study_id))


def read_epochs(storage: Any, study_id: int) -> EpochCount | None:
    """The study's epoch count and budget (one query), or None when it has no epoch budget."""
    attrs = _attrs(storage, study_id)
    if attrs.get(ATTR_EPOCH_BUDGET) is None:
        return None
    return EpochCount(int(attrs.get(ATTR_EPOCHS, 0)), int(attrs[ATTR_EPOCH_BUDGET]))


def epoch_count(study: optuna.Study) -> EpochCount | None:
    """:func:`read_epochs` of an open study (for status and the progress display)."""
    return read_epochs(storage_of(study), study_id_of(study))


def trained_epochs(trial: FrozenTrial) -> int:
    """Epochs ``trial`` trained itself, as its records tell: its reported epochs (or, where a
    multi-objective study reports none, ``epochs_run``) less those it replayed from its
    predecessor's checkpoint."""
    reported = len(trial.intermediate_values) or int(trial.user_attrs.get("epochs_run", 0))
    return max(0, reported - int(trial.user_attrs.get("resumed_from_epoch", 0)))


def raise_epoch_budget(study: optuna.Study, storage: Storage, max_epochs: int) -> bool:
    """Raise the study's epoch budget to ``max_epochs``; it never shrinks. True when set.

    The first time, the count starts from the epochs the study's trials already trained, so an
    epoch budget added to a running study covers its whole history. Call it under the schema
    lock, as :func:`hpo.study.budget.raise_budget`.
    """
    study_id = study_id_of(study)
    attrs = storage.get_study_system_attrs(study_id)
    current = attrs.get(ATTR_EPOCH_BUDGET)
    if current is not None and max_epochs <= int(current):
        if max_epochs < int(current):
            log.warning(
                "budget.max_epochs_total %d: study %r already has an epoch budget of %d, which "
                "is kept (a budget only grows)",
                max_epochs,
                study.study_name,
                current,
            )
        return False
    if ATTR_EPOCHS not in attrs:  # before the budget: a worker that sees a budget counts
        trained = sum(trained_epochs(t) for t in study.get_trials(deepcopy=False))
        storage.set_study_system_attr(study_id, ATTR_EPOCHS, trained)
    storage.set_study_system_attr(study_id, ATTR_EPOCH_BUDGET, max_epochs)
    return True


class EpochMeter:
    """A worker's side of the epoch budget: the check before each claim, the count after each
    epoch. :meth:`open` returns None for a study without an epoch budget (nothing counted)."""

    def __init__(self, storage: Storage, study: optuna.Study) -> None:
        self.storage, self.study = storage, study
        self._db = _backend(storage)

    @classmethod
    def open(cls, storage: Storage, study: optuna.Study) -> EpochMeter | None:
        """The meter of ``study``, or None when it has no epoch budget (one query)."""
        if read_epochs(storage, study_id_of(study)) is None:
            return None
        return cls(storage, study)

    def read(self) -> EpochCount:
        """The count and budget now (one query): before claiming a trial."""
        found = read_epochs(self.storage, study_id_of(self.study))
        assert found is not None, "an epoch budget is never removed"
        return found

    def add(self) -> EpochCount:
        """Count one epoch trained; the count after it and the budget (one statement)."""
        study_id = study_id_of(self.study)
        if self._db is not None:
            row = self._db.add_to_study_attr(study_id, ATTR_EPOCHS, 1, ATTR_EPOCH_BUDGET)
            assert row is not None and row[1] is not None, "the epoch count is never removed"
            return EpochCount(row[0], int(row[1]))
        with study_lock(self.storage, self.study.study_name):
            now = self.read()
            self.storage.set_study_system_attr(study_id, ATTR_EPOCHS, now.used + 1)
        return EpochCount(now.used + 1, now.budget)
