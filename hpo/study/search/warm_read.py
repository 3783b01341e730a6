"""What a warm start reads: an earlier study's trials, or a file hpo wrote about one.

Everything here only reads, and every problem is a :class:`SpecError` whose message starts
with ``where`` (the spec file and the field, ``studies/x.yaml: warm_start.study``), raised
before anything is written. Fitting the records to the new space is ``hpo.study.search.warm``'s.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hpo.errors import SpecError
from hpo.study.storage.connect import Storage, open_storage, redact


@dataclass(frozen=True)
class Record:
    """One earlier trial, or a configuration without a result, before it meets the new space."""

    label: str  # where it came from: "trial 12", "row 3", "entry 1"
    params: dict[str, Any]
    values: tuple[float, ...] | None  # None: a configuration only (a params file)
    intermediate: dict[int, float] = field(default_factory=dict)
    text: bool = False  # params read from CSV: strings, typed by the new space


@dataclass(frozen=True)
class Source:
    """What was read, and what it says about itself (None: it does not say)."""

    name: str  # "study 'x'" or the file's name, for messages and records
    records: list[Record]
    unfinished: int = 0  # trials that did not complete: never used
    directions: tuple[str, ...] | None = None
    metrics: tuple[str, ...] | None = None


def read_study(name: str, url: str, storage: Storage | None, where: str) -> Source:
    """The complete trials of study ``name`` in ``storage`` (opened from ``url`` if None)."""
    if storage is None:
        storage = _open(url, where)
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        known = f"studies there: {', '.join(names)}" if names else "it holds no study"
        raise SpecError(f"{where}: no study {name!r} in {redact(url)} ({known})") from None
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    trials = study.get_trials(deepcopy=False)
    records = [
        Record(f"trial {t.number}", dict(t.params), tuple(t.values), dict(t.intermediate_values))
        for t in trials
        if t.state == TrialState.COMPLETE
    ]
    return Source(
        f"study {name!r}",
        records,
        unfinished=len(trials) - len(records),
        directions=tuple(d.name.lower() for d in study.directions),
        metrics=tuple(study.metric_names) if study.metric_names else None,
    )


def _open(url: str, where: str) -> Storage:
    """The source's storage, read only: no tables created, no SQLite file left behind."""
    if url.startswith("sqlite"):
        db = make_url(url).database
        if db and db != ":memory:" and not Path(db).exists():
            raise SpecError(f"{where}: {db} does not exist")
    try:
        return open_storage(url, create_tables=False)
    except optuna.exceptions.StorageInternalError:
        raise SpecError(f"{where}: {redact(url)} holds no Optuna study") from None


def read_file(path: str, where: str) -> Source:
    """An ``hpo export`` CSV or JSON (every trial with its value), or a params YAML from
    ``hpo report`` (``best_params.yaml``: one configuration; ``pareto_front.yaml``: several),
    whose configurations have no result."""
    file = Path(path)
    if not file.is_file():
        raise SpecError(f"{where}: {path}: no such file")
    suffix = file.suffix.lower()
    try:
        text = file.read_text(encoding="utf-8")
        if suffix == ".csv":
            return _from_csv(file.name, text, where)
        if suffix == ".json":
            return _from_json(file.name, json.loads(text), where)
        return _from_yaml(file.name, yaml.safe_load(text), where)
    except UnicodeDecodeError:
        raise SpecError(f"{where}: {path}: not a UTF-8 text file") from None
    except (json.JSONDecodeError, yaml.YAMLError, csv.Error) as exc:
        kind = {".csv": "CSV", ".json": "JSON"}.get(suffix, "YAML")
        first = str(exc).splitlines()[0]
        raise SpecError(f"{where}: {path}: not valid {kind}: {first}") from None


def _from_csv(name: str, text: str, where: str) -> Source:
    """``hpo export``'s CSV (also Optuna's ``trials_dataframe().to_csv()``): ``params_<name>``
    columns, ``value`` (a JSON list for several metrics) or ``values_<i>``, optional ``state``."""
    rows = list(csv.DictReader(text.splitlines()))
    header = list(rows[0]) if rows else []
    if not any(h.startswith("params_") for h in header):
        raise SpecError(f"{where}: {name}: no params_<name> columns (an `hpo export` CSV?)")
    records, unfinished = [], 0
    for i, row in enumerate(rows, start=1):
        values = _csv_values(row)
        if row.get("state", "COMPLETE") != "COMPLETE" or values is None:
            unfinished += 1
            continue
        params = {k[7:]: v for k, v in row.items() if k.startswith("params_") and v != ""}
        label = f"trial {row['number']}" if row.get("number") else f"row {i}"
        records.append(Record(label, params, values, text=True))
    return Source(name, records, unfinished)


def _csv_values(row: dict[str, str]) -> tuple[float, ...] | None:
    cell = (row.get("value") or "").strip()
    if cell:
        found = json.loads(cell) if cell.startswith("[") else [cell]
    else:
        found = [row[k] for k in sorted(row) if k.startswith("values_") and row[k] != ""]
    try:
        values = tuple(float(v) for v in found)
    except (TypeError, ValueError):
        return None
    return values if values and all(math.isfinite(v) for v in values) else None


def _from_json(name: str, doc: Any, where: str) -> Source:
    """``hpo export --format json``: the study's metric and direction, and its trials."""
    trials = doc.get("trials") if isinstance(doc, dict) else doc
    if not isinstance(trials, list):
        raise SpecError(f"{where}: {name}: no list of trials (an `hpo export --format json`?)")
    records, unfinished = [], 0
    for i, t in enumerate(trials, start=1):
        value = t.get("value") if isinstance(t, dict) else None
        found = value if isinstance(value, list) else [value]
        ok = isinstance(t, dict) and t.get("state", "COMPLETE") == "COMPLETE"
        if not ok or not all(_finite(v) for v in found) or not isinstance(t.get("params"), dict):
            unfinished += 1
            continue
        steps = {
            int(k): float(v) for k, v in (t.get("intermediate_values") or {}).items() if _finite(v)
        }
        label = f"trial {t['number']}" if "number" in t else f"entry {i}"
        records.append(Record(label, dict(t["params"]), tuple(map(float, found)), steps))
    meta = doc if isinstance(doc, dict) else {}
    return Source(
        name, records, unfinished, _names(meta.get("direction")), _names(meta.get("metric"))
    )


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _names(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _from_yaml(name: str, doc: Any, where: str) -> Source:
    """``best_params.yaml`` (a mapping of parameters) or ``pareto_front.yaml`` (a list of
    entries with ``params``): configurations without results, in the file's order."""
    entries = doc if isinstance(doc, list) else [doc]
    records = []
    for i, entry in enumerate(entries, start=1):
        params = entry.get("params", entry) if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            raise SpecError(
                f"{where}: {name}: entry {i} is not a mapping of parameters (best_params.yaml)"
            )
        records.append(Record(f"entry {i}", dict(params), None))
    return Source(name, records)
