"""Reading trials in two statements instead of seven.

Optuna's ``RDBStorage._get_trials`` (behind every refresh of a worker's view of the study)
checks that the study exists, selects the trials, then loads each of five relations with its own
query and builds ORM objects for every row. ``TrialReads`` selects the trial rows, then every
param, value, intermediate value and attribute of those trials in one ``UNION ALL`` query, and
builds the same ``FrozenTrial`` objects from plain rows. A worker refreshes its view at least
twice per trial, and a worker joining a study of 10,000 trials loads all of them once.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Container, Iterable
from typing import Any

import sqlalchemy
from optuna import distributions
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

_T = models.BaseModel.metadata.tables
_TRIALS = _T["trials"]
_VALUE_TYPE = models.TrialValueModel.TrialValueType
_STEP_TYPE = models.TrialIntermediateValueModel.TrialIntermediateValueType

# One row per related record: (kind, trial_id, integer, float, text, text), in each table's
# primary-key (insertion) order, the order Optuna's relationship loads give.
_PARAM, _VALUE, _STEP, _USER, _SYSTEM = range(5)


#: Trial ids per relation query (SQLite allows 32,766 bound values in one statement).
_CHUNK = 5000


def _related(ids: list[int]) -> sqlalchemy.CompoundSelect:
    """Every param, value, intermediate value, user and system attr of the trials ``ids``:
    each table looked up on its own (trial_id, ...) index, no join."""
    text, num, flt = sqlalchemy.String, sqlalchemy.Integer, sqlalchemy.Float

    def part(kind: int, table: str, i: Any, f: Any, s1: Any, s2: Any) -> sqlalchemy.Select:
        t = _T[table]
        return sqlalchemy.select(
            sqlalchemy.literal(kind, num).label("kind"),
            list(t.primary_key)[0].label("pk"),
            t.c.trial_id,
            sqlalchemy.cast(i(t) if i else sqlalchemy.null(), num).label("i"),
            sqlalchemy.cast(f(t) if f else sqlalchemy.null(), flt).label("f"),
            sqlalchemy.cast(s1(t), text).label("s1"),
            sqlalchemy.cast(s2(t) if s2 else sqlalchemy.null(), text).label("s2"),
        ).where(t.c.trial_id.in_(ids))

    return sqlalchemy.union_all(
        part(_PARAM, "trial_params", lambda t: t.c.param_id, lambda t: t.c.param_value,
             lambda t: t.c.param_name, lambda t: t.c.distribution_json),
        part(_VALUE, "trial_values", lambda t: t.c.objective, lambda t: t.c.value,
             lambda t: t.c.value_type, None),
        part(_STEP, "trial_intermediate_values", lambda t: t.c.step,
             lambda t: t.c.intermediate_value, lambda t: t.c.intermediate_value_type, None),
        part(_USER, "trial_user_attributes", None, None, lambda t: t.c.key,
             lambda t: t.c.value_json),
        part(_SYSTEM, "trial_system_attributes", None, None, lambda t: t.c.key,
             lambda t: t.c.value_json),
    ).order_by("kind", "pk")  # fmt: skip


def _local(utc: datetime.datetime | None) -> datetime.datetime | None:
    """Optuna stores naive UTC and hands out naive local time (``TrialModel.datetime_start``)."""
    if utc is None:
        return None
    return utc.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


def utc(local: datetime.datetime) -> datetime.datetime:
    """A naive local time as Optuna stores it: naive UTC."""
    return local.astimezone(datetime.timezone.utc).replace(tzinfo=None)


class _Parts:
    """The related rows of one trial, gathered before its FrozenTrial is built."""

    def __init__(self) -> None:
        self.params: list[tuple[int, str, float, str]] = []
        self.values: dict[int, float] = {}
        self.steps: dict[int, float] = {}
        self.user: dict[str, Any] = {}
        self.system: dict[str, Any] = {}

    def add(self, kind: int, i: int | None, f: float | None, s1: str, s2: str | None) -> None:
        if kind == _PARAM:
            assert i is not None and f is not None and s2 is not None
            self.params.append((i, s1, f, s2))
        elif kind == _VALUE:
            assert i is not None
            self.values[i] = models.TrialValueModel.stored_repr_to_value(
                f, _VALUE_TYPE.__members__[s1]
            )
        elif kind == _STEP:
            assert i is not None
            self.steps[i] = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
                f, _STEP_TYPE.__members__[s1]
            )
        else:
            (self.user if kind == _USER else self.system)[s1] = json.loads(s2 or "null")

    def build(self, row: Any) -> FrozenTrial:
        """What ``RDBStorage._build_frozen_trial_from_trial_model`` builds."""
        dists = {}
        params = {}
        for _, name, value, dist_json in sorted(self.params):  # by param_id, as Optuna
            dist = distributions.json_to_distribution(dist_json)
            dists[name], params[name] = dist, dist.to_external_repr(value)
        values = [self.values[k] for k in sorted(self.values)] if self.values else None
        return FrozenTrial(
            number=row.number,
            state=row.state,
            value=None,
            values=values,
            datetime_start=_local(row.datetime_start),
            datetime_complete=_local(row.datetime_complete),
            params=params,
            distributions=dists,
            user_attrs=self.user,
            system_attrs=self.system,
            intermediate_values=self.steps,
            trial_id=row.trial_id,
        )


class TrialReads(RDBStorage):
    """RDBStorage whose trial reads take two statements, whatever the number of trials."""

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        included = sorted(i for i in included_trial_ids if i <= trial_id_greater_than)
        where = _trial_filter(study_id, states, included, trial_id_greater_than)
        with self.engine.connect() as conn:  # one checkout (and pre-ping) for both queries
            query = sqlalchemy.select(_TRIALS).where(where).order_by(_TRIALS.c.trial_id)
            rows = conn.execute(query).all()
            parts = {row.trial_id: _Parts() for row in rows}
            ids = list(parts)
            for start in range(0, len(ids), _CHUNK):
                for kind, _, trial_id, i, f, s1, s2 in conn.execute(
                    _related(ids[start : start + _CHUNK])
                ):
                    parts[trial_id].add(kind, i, f, s1, s2)
        if not rows:
            self.get_study_name_from_id(study_id)  # KeyError for a study that is not there
        return [parts[row.trial_id].build(row) for row in rows]


def _trial_filter(
    study_id: int, states: Container[TrialState] | None, included: list[int], greater_than: int
) -> Any:
    """Optuna's trial filter of ``_get_trials``: the study's trials (in ``states``), or on a
    refresh only those above ``greater_than`` or in ``included``."""
    if greater_than > -1:
        # A refresh: the few trials above the last finished id or listed unfinished. The
        # "+ 0" keeps the planner on the primary key: with the study's statistics out of
        # date (autovacuum re-analyzes after 10% of a table changed) it otherwise scans
        # every trial of the study through the study_id index.
        newer = _TRIALS.c.trial_id > greater_than
        by_id = sqlalchemy.or_(newer, _TRIALS.c.trial_id.in_(included)) if included else newer
        where = (_TRIALS.c.study_id + 0 == study_id) & by_id
    else:
        where = _TRIALS.c.study_id == study_id
    if states is not None:
        assert isinstance(states, Iterable)
        where = where & _TRIALS.c.state.in_(list(states))
    return where
