"""Trials as plain records: one row per trial, written as CSV or JSON for other tools."""

from __future__ import annotations

import csv
import json
import math
from typing import IO, Any, Literal

import optuna

from hpo.keys import ATTR_WARM
from hpo.study import FAILED_TRIAL, metric_names

Format = Literal["csv", "json"]
#: The fixed CSV columns; ``params_<name>`` and ``user_attrs_<name>`` columns follow.
COLUMNS = (
    "number",
    "state",
    "value",
    "datetime_start",
    "datetime_complete",
    "duration_s",
    "retry_of",
    "warm_start",
)


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as a JSON-ready dict: state, value, times, params, user attrs, epoch values.

    ``value`` is a list, one per metric, for a trial of a multi-objective study.
    """
    values = trial.values or []
    value: Any = [_finite(v) for v in values] if len(values) > 1 else _finite(trial.value)
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": value,
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": (
            trial.datetime_complete.isoformat() if trial.datetime_complete else None
        ),
        "duration_s": trial.duration.total_seconds() if trial.duration else None,
        "retry_of": trial.system_attrs.get(FAILED_TRIAL),  # the failed trial this one re-runs
        # warm-start history: the earlier trial it copies (it is not one of the study's own)
        "warm_start": trial.system_attrs.get(ATTR_WARM),
        "params": dict(trial.params),
        "user_attrs": dict(trial.user_attrs),
        "intermediate_values": {
            str(step): _finite(v) for step, v in sorted(trial.intermediate_values.items())
        },
    }


def _finite(value: float | None) -> float | None:
    """NaN and infinities become None: JSON has no spelling for them."""
    return value if value is None or math.isfinite(value) else None


def trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of ``study``, in trial-number order."""
    return [trial_record(t) for t in study.get_trials(deepcopy=False)]


def write_trials(study: optuna.Study, stream: IO[str], fmt: Format = "csv") -> int:
    """Write the study's trials to ``stream`` as CSV or JSON; returns the number of trials.

    CSV has one row per trial, with a ``params_<name>`` and a ``user_attrs_<name>`` column per
    name seen in any trial (nested values as JSON). JSON is one object: the study's name,
    metric and direction (lists for a multi-objective study), and ``trials``, the full records
    including intermediate values.
    """
    records = trial_records(study)
    if fmt == "json":
        names = metric_names(study)
        directions = [d.name.lower() for d in study.directions]
        multi = len(directions) > 1
        doc = {
            "study": study.study_name,
            "metric": names if multi else names[0],
            "direction": directions if multi else directions[0],
            "trials": records,
        }
        json.dump(doc, stream, indent=2, default=str, allow_nan=False)
        stream.write("\n")
    else:
        _write_csv(records, stream)
    return len(records)


def _write_csv(records: list[dict[str, Any]], stream: IO[str]) -> None:
    params = _keys(r["params"] for r in records)
    attrs = _keys(r["user_attrs"] for r in records)
    header = [*COLUMNS, *(f"params_{k}" for k in params), *(f"user_attrs_{k}" for k in attrs)]
    writer = csv.writer(stream)
    writer.writerow(header)
    for r in records:
        row = [r[c] for c in COLUMNS]
        row += [r["params"].get(k) for k in params] + [r["user_attrs"].get(k) for k in attrs]
        writer.writerow(_cell(v) for v in row)


def _keys(dicts: Any) -> list[str]:
    """Keys of all ``dicts`` in order of first appearance."""
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return list(seen)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return value
