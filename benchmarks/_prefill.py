"""Fill a study with N finished trials quickly: a sequential Hyperband run, written in bulk.

``study.add_trials`` writes one trial at a time (about 15 statements each: ~4 minutes for 10,000
trials here). This writes the same rows with a handful of bulk INSERTs, and makes the history
look like what hpo leaves behind: the no-op objective's learning curves under a Hyperband
pruner (min_resource 1, reduction factor 3), so most trials are PRUNED at a rung, each trial
carries the ``completed_rung_N`` system attrs that Optuna's SuccessiveHalving writes, and the
bracket of each trial is the one Optuna's HyperbandPruner computes from the study name.
"""

from __future__ import annotations

import bisect
import datetime
import json
import random
from types import SimpleNamespace
from typing import Any, cast

import _noop_objective as noop
import optuna
import sqlalchemy
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

MIN_RESOURCE, REDUCTION = 1, 3
_FINITE_VALUE = models.TrialValueModel.TrialValueType.FINITE
_FINITE = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE


class _Hyperband:
    """SuccessiveHalving's rule per bracket and rung, for trials that run one after another."""

    def __init__(self, study: optuna.Study, epochs: int) -> None:
        self.study, self.epochs = study, epochs
        # Optuna's own bracket assignment (crc32 of study name and trial number); with an
        # integer max_resource its initialization reads no trials.
        self.pruner = optuna.pruners.HyperbandPruner(MIN_RESOURCE, epochs, REDUCTION)
        self.pruner._try_initialization(study)
        self.rungs: dict[tuple[int, int], list[float]] = {}

    def run(self, number: int, x: float) -> tuple[dict[int, float], dict[str, float], bool]:
        """The trial's reported curve, its rung attrs, and whether it was pruned."""
        trial = cast(FrozenTrial, SimpleNamespace(number=number))  # all it reads of a trial
        bracket = self.pruner._get_bracket_id(self.study, trial)
        curve: dict[int, float] = {}
        attrs: dict[str, float] = {}
        rung = 0
        for step in range(1, self.epochs + 1):
            value = curve[step] = noop.curve(x, step)
            while step >= MIN_RESOURCE * REDUCTION ** (bracket + rung):
                attrs[f"completed_rung_{rung}"] = value
                competing = self.rungs.setdefault((bracket, rung), [])
                bisect.insort(competing, value)
                idx = max(len(competing) // REDUCTION - 1, 0)
                if value < competing[-(idx + 1)]:  # maximize
                    return curve, attrs, True
                rung += 1
        return curve, attrs, False


def prefill(study: optuna.Study, n: int, seed: int = 0) -> None:
    """Append ``n`` finished trials (TPE's ``x`` in [0, 1]) to an empty RDB study."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    engine: sqlalchemy.Engine = backend.engine
    study_id = study._study_id
    rng = random.Random(seed)
    hyperband = _Hyperband(study, noop.EPOCHS)
    dist = optuna.distributions.distribution_to_json(optuna.distributions.FloatDistribution(0, 1))
    now = datetime.datetime(2026, 1, 1)
    rows: dict[str, list[dict[str, Any]]] = {
        "trials": [],
        "params": [],
        "values": [],
        "intermediate": [],
        "system": [],
    }
    for number in range(n):
        x = rng.random()
        curve, attrs, pruned = hyperband.run(number, x)
        rows["trials"].append(
            {
                "number": number,
                "study_id": study_id,
                "state": TrialState.PRUNED if pruned else TrialState.COMPLETE,
                "datetime_start": now,
                "datetime_complete": now,
            }
        )
        rows["params"].append({"param_name": "x", "param_value": x, "distribution_json": dist})
        rows["values"].append(
            {"objective": 0, "value": curve[max(curve)], "value_type": _FINITE_VALUE}
        )
        rows["intermediate"].append(
            [
                {"step": s, "intermediate_value": v, "intermediate_value_type": _FINITE}
                for s, v in curve.items()
            ]
        )
        rows["system"].append([{"key": k, "value_json": json.dumps(v)} for k, v in attrs.items()])
    _insert(engine, rows)


def _insert(engine: sqlalchemy.Engine, rows: dict[str, list[Any]]) -> None:
    meta = models.BaseModel.metadata
    trials = meta.tables["trials"]
    with engine.begin() as conn:
        ids = (
            conn.execute(
                trials.insert().returning(trials.c.trial_id, sort_by_parameter_order=True),
                rows["trials"],
            )
            .scalars()
            .all()
        )
        conn.execute(
            meta.tables["trial_params"].insert(),
            [{**r, "trial_id": i} for i, r in zip(ids, rows["params"], strict=True)],
        )
        conn.execute(
            meta.tables["trial_values"].insert(),
            [{**r, "trial_id": i} for i, r in zip(ids, rows["values"], strict=True)],
        )
        conn.execute(
            meta.tables["trial_intermediate_values"].insert(),
            [
                {**r, "trial_id": i}
                for i, rs in zip(ids, rows["intermediate"], strict=True)
                for r in rs
            ],
        )
        system = [
            {**r, "trial_id": i} for i, rs in zip(ids, rows["system"], strict=True) for r in rs
        ]
        if system:
            conn.execute(meta.tables["trial_system_attributes"].insert(), system)
    if engine.name == "postgresql":  # as after any bulk load: autovacuum would do it later
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sqlalchemy.text("ANALYZE"))
