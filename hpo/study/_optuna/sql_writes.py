"""One statement for each of a worker's frequent storage operations (PostgreSQL, SQLite).

Optuna's RDBStorage reads the trial to check that it is still running, then reads the old row,
then writes: three statements for each ``report`` and two for each attribute. Here the check and
the write are one ``INSERT ... SELECT ... WHERE state = 'RUNNING' ON CONFLICT DO UPDATE``: a
row is written only while the trial runs, and only when nothing was written does a second
query say why (no such trial, or already finished). Claiming a waiting trial and reading the
rung values a pruner compares are likewise one statement each. The rows are Optuna's own, so
the study stays readable by Optuna and optuna-dashboard. Other databases keep Optuna's
statements.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy
from optuna import distributions
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from hpo.study._optuna.sql_reads import TrialReads, utc

_UPSERT_DIALECTS = ("postgresql", "sqlite")

_INTERMEDIATE = sqlalchemy.text(
    "INSERT INTO trial_intermediate_values"
    " (trial_id, step, intermediate_value, intermediate_value_type)"
    " SELECT trial_id, :step, :value, :value_type FROM trials"
    " WHERE trial_id = :trial_id AND state = 'RUNNING'"
    " ON CONFLICT (trial_id, step) DO UPDATE SET"
    " intermediate_value = excluded.intermediate_value,"
    " intermediate_value_type = excluded.intermediate_value_type"
)


# A WAITING trial has an id above the last finished one this worker read, or was unfinished
# then (``TrialCache``): bounding by those ids keeps the claim on the primary key instead of
# scanning every trial of the study; "+ 0" keeps the planner
# off the study_id index even with out-of-date statistics (see hpo.study._optuna.sql_reads).
_WAITING = (
    "SELECT trial_id FROM trials WHERE study_id + 0 = :study_id AND state = 'WAITING'"
    " AND (trial_id > :after OR trial_id IN :ids) ORDER BY number, trial_id LIMIT 1"
)
_CLAIM_PG = sqlalchemy.text(
    "UPDATE trials SET state = 'RUNNING', datetime_start = :now"
    f" WHERE state = 'WAITING' AND trial_id = ({_WAITING} FOR UPDATE SKIP LOCKED)"
    " RETURNING trial_id"
).bindparams(sqlalchemy.bindparam("ids", expanding=True))
_NEXT_WAITING = sqlalchemy.text(_WAITING).bindparams(sqlalchemy.bindparam("ids", expanding=True))
_START = sqlalchemy.text(
    "UPDATE trials SET state = 'RUNNING', datetime_start = :now"
    " WHERE trial_id = :trial_id AND state = 'WAITING'"
)


# The trial-id conditions are on the attrs' own (trial_id, key) index, which keeps the plan an
# index scan even where the planner's statistics are stale (measured after a bulk load of 10,000
# trials, the conditions on trials made it a scan).
_SYSTEM_ATTRS_LIKE = sqlalchemy.text(
    "SELECT a.trial_id, t.number, a.key, a.value_json FROM trial_system_attributes a"
    " JOIN trials t ON t.trial_id = a.trial_id"
    " WHERE (a.trial_id > :after OR a.trial_id IN :ids) AND a.key LIKE :pattern"
    " AND t.study_id + 0 = :study_id"
).bindparams(sqlalchemy.bindparam("ids", expanding=True))


# A study counter (``hpo:epochs``) is a study system attr holding a JSON integer: added to in
# place, under the row's lock, and read back with another attr of the study (its budget) in the
# same statement.
_ADD_TO_STUDY_ATTR = sqlalchemy.text(
    "UPDATE study_system_attributes"
    " SET value_json = CAST(CAST(value_json AS BIGINT) + :n AS VARCHAR(32))"
    " WHERE study_id = :study_id AND key = :key"
    " RETURNING value_json, (SELECT b.value_json FROM study_system_attributes b"
    " WHERE b.study_id = :study_id AND b.key = :with_key)"
)
_STUDY_ATTRS = sqlalchemy.text(
    "SELECT key, value_json FROM study_system_attributes"
    " WHERE study_id = :study_id AND key IN :keys"
).bindparams(sqlalchemy.bindparam("keys", expanding=True))


def _attrs_statement(table: str, n: int) -> sqlalchemy.TextClause:
    rows = " UNION ALL ".join(f"SELECT :k{i} AS key, :v{i} AS value_json" for i in range(n))
    return sqlalchemy.text(
        f"INSERT INTO {table} (trial_id, key, value_json)"
        f" SELECT t.trial_id, a.key, a.value_json FROM trials t, ({rows}) a"
        " WHERE t.trial_id = :trial_id AND t.state = 'RUNNING'"
        " ON CONFLICT (trial_id, key) DO UPDATE SET value_json = excluded.value_json"
    )


class UpsertWrites(TrialReads):
    """RDBStorage whose writes to a running trial take one statement each."""

    @property
    def upserts(self) -> bool:
        """Whether the database takes hpo's statements (PostgreSQL, SQLite); else Optuna's."""
        return self.engine.name in _UPSERT_DIALECTS

    def _written_or_raise(self, trial_id: int, rowcount: int) -> None:
        """Nothing written: raise what Optuna raises (KeyError, UpdateFinishedTrialError)."""
        if rowcount > 0:
            return
        with self.engine.connect() as conn:
            state = conn.execute(
                sqlalchemy.text("SELECT state FROM trials WHERE trial_id = :t"), {"t": trial_id}
            ).scalar()
        if state is None:
            raise KeyError(f"No trial with trial_id {trial_id} exists.")
        self.check_trial_is_updatable(trial_id, TrialState[state])
        raise RuntimeError(f"trial {trial_id} is {state}: not written")  # WAITING: never ours

    def claim_waiting(
        self, study_id: int, after: int = -1, ids: list[int] | None = None
    ) -> tuple[int, datetime.datetime] | None:
        """Mark the study's first WAITING trial RUNNING; its id and start time, or None.

        Only trials with an id above ``after`` or in ``ids`` are looked at (all by default).

        What ``Study._pop_waiting_trial_id`` does, in one statement on PostgreSQL (``FOR UPDATE
        SKIP LOCKED``: concurrent workers take different trials) and in one ``BEGIN IMMEDIATE``
        transaction on SQLite, instead of reading every unfinished trial first.
        """
        if not self.upserts:
            raise NotImplementedError(self.engine.name)
        now = datetime.datetime.now()
        with self.engine.begin() as conn:
            params = {"study_id": study_id, "now": utc(now), "after": after, "ids": ids or []}
            if self.engine.name == "postgresql":
                trial_id = conn.execute(_CLAIM_PG, params).scalar()
            else:  # SQLite: the transaction already holds the database's write lock
                trial_id = conn.execute(_NEXT_WAITING, params).scalar()
                if trial_id is not None:
                    conn.execute(_START, {"trial_id": trial_id, "now": params["now"]})
        return None if trial_id is None else (int(trial_id), now)

    def system_attrs_like(
        self, study_id: int, pattern: str, after: int, ids: list[int]
    ) -> list[tuple[int, int, str, Any]]:
        """(trial id, number, key, value) of the system attrs matching the SQL ``pattern`` of
        the study's trials with an id above ``after`` or in ``ids``."""
        params = {"study_id": study_id, "pattern": pattern, "after": after, "ids": ids}
        with self.engine.connect() as conn:
            rows = conn.execute(_SYSTEM_ATTRS_LIKE, params).all()
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def add_to_study_attr(
        self, study_id: int, key: str, n: int, with_key: str
    ) -> tuple[int, Any] | None:
        """Add ``n`` to the study's integer system attr ``key`` in one statement; its new value
        and the value of attr ``with_key``, or None when the study has no attr ``key``."""
        if not self.upserts:
            raise NotImplementedError(self.engine.name)
        params = {"study_id": study_id, "key": key, "n": n, "with_key": with_key}
        with self.engine.begin() as conn:
            row = conn.execute(_ADD_TO_STUDY_ATTR, params).first()
        if row is None:
            return None
        return int(json.loads(row[0])), None if row[1] is None else json.loads(row[1])

    def study_system_attrs_of(self, study_id: int, keys: list[str]) -> dict[str, Any]:
        """The study's system attrs named ``keys`` (those it has), in one statement; unlike
        ``get_study_system_attrs``, without the others (``hpo:nodes`` grows with every node)."""
        with self.engine.connect() as conn:
            rows = conn.execute(_STUDY_ATTRS, {"study_id": study_id, "keys": keys}).all()
        return {r[0]: json.loads(r[1]) for r in rows}

    def enqueue_waiting(self, study_id: int, fixed_params: list[dict[str, Any]]) -> list[int]:
        """Create WAITING trials as ``Study.enqueue_trial`` does, all in one transaction.

        Optuna writes each trial in ~7 statements; this takes the same lock on the study row
        (which serializes trial numbering with any Optuna process), counts the study's trials
        once, and inserts the trials and their ``fixed_params`` in one statement each.
        """
        if not fixed_params:
            return []
        tables = models.BaseModel.metadata.tables
        studies, trials = tables["studies"], tables["trials"]
        with self.engine.begin() as conn:
            count = _lock_and_count(conn, studies, trials, study_id)
            rows = [
                {"number": count + i, "study_id": study_id, "state": TrialState.WAITING}
                for i in range(len(fixed_params))
            ]
            insert = trials.insert().returning(trials.c.trial_id, sort_by_parameter_order=True)
            ids = [int(i) for i in conn.execute(insert, rows).scalars()]
            attrs = [
                {"trial_id": i, "key": "fixed_params", "value_json": json.dumps(p)}
                for i, p in zip(ids, fixed_params, strict=True)
            ]
            conn.execute(tables["trial_system_attributes"].insert(), attrs)
        return ids

    def add_finished_trials(self, study_id: int, trials: Sequence[FrozenTrial]) -> None:
        """Add finished trials as ``Study.add_trials`` does, all in one transaction.

        Optuna writes each trial in its own transaction (one fsync per trial on SQLite); a warm
        start copies thousands while every other node waits on the creating lock. Here the
        study row is locked as Optuna does, and the trials, then each of their relations, are
        inserted with one statement each: the rows are the ones Optuna would write.
        """
        if not trials:
            return
        tables = models.BaseModel.metadata.tables
        studies, rows = tables["studies"], tables["trials"]
        with self.engine.begin() as conn:
            count = _lock_and_count(conn, studies, rows, study_id)
            insert = rows.insert().returning(rows.c.trial_id, sort_by_parameter_order=True)
            ids = [
                int(i)
                for i in conn.execute(
                    insert, [_trial_row(study_id, count + n, t) for n, t in enumerate(trials)]
                ).scalars()
            ]
            for table, related in _related_rows(ids, trials).items():
                if related:
                    conn.execute(tables[table].insert(), related)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        if not self.upserts:
            super().set_trial_intermediate_value(trial_id, step, intermediate_value)
            return
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
            intermediate_value
        )
        params = {"trial_id": trial_id, "step": step, "value": stored, "value_type": kind.name}
        with self.engine.begin() as conn:
            rowcount = conn.execute(_INTERMEDIATE, params).rowcount
        self._written_or_raise(trial_id, rowcount)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_attrs("trial_user_attributes", trial_id, {key: value})

    def set_trial_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Write several user attrs of a running trial at once."""
        self._set_attrs("trial_user_attributes", trial_id, attrs)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._set_attrs("trial_system_attributes", trial_id, {key: value})

    def _set_attrs(self, table: str, trial_id: int, attrs: dict[str, Any]) -> None:
        if not attrs:
            return
        if not self.upserts:
            write = (
                super().set_trial_user_attr
                if table == "trial_user_attributes"
                else super().set_trial_system_attr
            )
            for key, value in attrs.items():
                write(trial_id, key, value)
            return
        params: dict[str, Any] = {"trial_id": trial_id}
        for i, (key, value) in enumerate(attrs.items()):
            params[f"k{i}"], params[f"v{i}"] = key, json.dumps(value)
        with self.engine.begin() as conn:
            rowcount = conn.execute(_attrs_statement(table, len(attrs)), params).rowcount
        self._written_or_raise(trial_id, rowcount)


def _trial_row(study_id: int, number: int, trial: FrozenTrial) -> dict[str, Any]:
    start, end = trial.datetime_start, trial.datetime_complete
    return {
        "number": number,
        "study_id": study_id,
        "state": trial.state,
        "datetime_start": utc(start) if start else None,
        "datetime_complete": utc(end) if end else None,
    }


def _related_rows(ids: list[int], trials: Sequence[FrozenTrial]) -> dict[str, list[dict[str, Any]]]:
    """Each relation's rows of ``trials`` (created with ``ids``), as Optuna writes them."""
    out: dict[str, list[dict[str, Any]]] = {
        "trial_params": [],
        "trial_values": [],
        "trial_intermediate_values": [],
        "trial_system_attributes": [],
        "trial_user_attributes": [],
    }
    for trial_id, t in zip(ids, trials, strict=True):
        for name, value in t.params.items():
            dist = t.distributions[name]
            out["trial_params"].append(
                {
                    "trial_id": trial_id,
                    "param_name": name,
                    "param_value": dist.to_internal_repr(value),
                    "distribution_json": distributions.distribution_to_json(dist),
                }
            )
        for objective, value in enumerate(t.values or ()):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            out["trial_values"].append(
                {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
            )
        for step, value in t.intermediate_values.items():
            at, step_kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
                value
            )
            out["trial_intermediate_values"].append(
                {
                    "trial_id": trial_id,
                    "step": step,
                    "intermediate_value": at,
                    "intermediate_value_type": step_kind,
                }
            )
        for table, attrs in (
            ("trial_system_attributes", t.system_attrs),
            ("trial_user_attributes", t.user_attrs),
        ):
            out[table] += [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                for k, v in attrs.items()
            ]
    return out


def _lock_and_count(
    conn: sqlalchemy.Connection, studies: sqlalchemy.Table, trials: sqlalchemy.Table, study_id: int
) -> int:
    """Lock the study's row as Optuna does before numbering trials (serializing with any Optuna
    process), then count its trials: the next trial's number."""
    conn.execute(
        sqlalchemy.select(studies.c.study_id)
        .where(studies.c.study_id == study_id)
        .with_for_update()
    )
    return int(
        conn.execute(
            sqlalchemy.select(sqlalchemy.func.count())
            .select_from(trials)
            .where(trials.c.study_id == study_id)
        ).scalar_one()
    )
