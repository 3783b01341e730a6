"""Warm start: a new study begins from an earlier one's results (spec ``warm_start:``).

When the study is *created* (once, under the lock that creates it: ``hpo.study.handle``),
the earlier study's complete trials that fit the new space are added to it as history for the
sampler, and its ``top_k`` best configurations are enqueued as the study's first trials.

- **History** trials are COMPLETE trials with the new space's distributions and the earlier
  values (and learning curves), marked with the trial system attr ``hpo:warm_start`` (where
  each came from). They take no budget slot, and hpo's counts, progress and best trial leave
  them out; the sampler (and Optuna's own ``study.best_trial``) sees them.
- **First trials** are ordinary waiting trials with their parameters fixed (user attr
  ``warm_start_config``): they count against the budget, run before any other, and, being
  in the storage once, are claimed by one worker each.
- **Fitting** a trial to the new space: every parameter active in the new space (``when:``
  conditions followed) must be present and inside it (in [low, high], on the step, among the
  choices); parameters the new space lacks or leaves inactive are dropped. Others are skipped
  and counted.

Nothing is written when the source is missing, says another direction or metric, or has no
trial that fits: :func:`plan` raises :class:`SpecError` naming the spec file and the field.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial

from hpo.errors import SpecError
from hpo.keys import ATTR_CONFIG, ATTR_WARM
from hpo.spec import CategoricalParam, FloatParam, StudySpec, is_active, ordered
from hpo.study._optuna import study_id_of
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study.search.ranking import ranked
from hpo.study.search.warm_read import Record, Source, read_file, read_study
from hpo.study.storage.connect import Storage, redact

log = logging.getLogger(__name__)

#: Why a record was not used, by reason.
MISSING, OUTSIDE = "missing", "outside"


@dataclass(frozen=True)
class WarmPlan:
    """What a warm start will add, decided before anything is written."""

    source: str  # "study 'x' in sqlite:///..." or the file's path
    history: list[FrozenTrial]
    first: list[tuple[dict[str, Any], str]]  # (fixed params, label), best first
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> records
    unfinished: int = 0  # source trials that did not complete

    def record(self, enqueued: int) -> dict[str, Any]:
        """The study system attr ``hpo:warm_start``: what was added, for counts and readers."""
        return {
            "source": self.source,
            "history": len(self.history),
            "first": enqueued,
            "skipped": sum(self.skipped.values()),
        }

    def describe(self, enqueued: int | None = None) -> str:
        """One line: what is used, what was skipped and why."""
        first = len(self.first) if enqueued is None else enqueued
        reasons = {MISSING: "missing a parameter", OUTSIDE: "outside the space"}
        why = ", ".join(f"{n} {reasons[k]}" for k, n in self.skipped.items() if n)
        skipped = sum(self.skipped.values())
        return (
            f"warm start from {self.source}: {len(self.history)} trials as history"
            + (f", {skipped} skipped ({why})" if skipped else "")
            + (f", its best {first} configurations run first" if first else "")
        )


def plan(spec: StudySpec, url: str, storage: Storage | None, source: str) -> WarmPlan:
    """Read the warm start's source and fit it to ``spec``'s space; writes nothing.

    Args:
        url: this study's storage URL (the source study's default).
        storage: this study's storage, open (used when the source study lives there too).
        source: the spec's file (or ``spec``), for messages.

    Raises:
        SpecError: no such study or file, another direction or metric, nothing fits.
    """
    warm = spec.warm_start
    assert warm is not None
    if warm.study is not None:
        where = f"{source}: warm_start.study"
        src_url = warm.storage or url
        read = read_study(warm.study, src_url, None if warm.storage else storage, where)
        name = f"{read.name} in {redact(src_url)}"
    else:
        assert warm.from_ is not None
        where = f"{source}: warm_start.from"
        read, name = read_file(warm.from_, where), warm.from_
    _check_agrees(spec, read, where)
    return _fit_all(spec, read, name, where)


def _check_agrees(spec: StudySpec, read: Source, where: str) -> None:
    ours = tuple(m.direction for m in spec.metrics)
    if read.directions is not None and read.directions != ours:
        raise SpecError(
            f"{where}: {read.name} is {', '.join(read.directions)}, this study "
            f"{', '.join(ours)}: its best would be this study's worst"
        )
    names = tuple(m.name for m in spec.metrics)
    if read.metrics is not None and read.metrics != names:
        raise SpecError(
            f"{where}: {read.name} optimises {', '.join(read.metrics)}, this study "
            f"{', '.join(names)}"
        )
    counts = {len(r.values) for r in read.records if r.values is not None}
    if counts - {len(ours)}:
        raise SpecError(
            f"{where}: {read.name} has {max(counts - {len(ours)})} value(s) per trial, "
            f"this study {len(ours)} metric(s)"
        )


def _fit_all(spec: StudySpec, read: Source, name: str, where: str) -> WarmPlan:
    dists = distributions(spec)
    history: list[FrozenTrial] = []
    configs: list[tuple[dict[str, Any], Record]] = []
    skipped = {MISSING: 0, OUTSIDE: 0}
    for rec in read.records:
        params, why = fit(spec, rec.params, rec.text)
        if params is None:
            skipped[why or OUTSIDE] += 1
            continue
        configs.append((params, rec))
        if rec.values is not None:
            history.append(_history_trial(params, dists, rec, f"{read.name} {rec.label}"))
    if not configs:
        what = "complete trials" if read.records and read.records[0].values else "entries"
        raise SpecError(
            f"{where}: none of the {len(read.records)} {what} of {read.name} fits this "
            f"study's space ({skipped[MISSING]} lack a parameter, {skipped[OUTSIDE]} lie "
            "outside it)"
        )
    top_k = spec.warm_start.top_k if spec.warm_start else 0
    first = _best_first(spec, configs, top_k, read.name)
    if not history and not first:
        raise SpecError(f"{where}: {read.name} holds no results, only configurations: set top_k")
    return WarmPlan(name, history, first, skipped, read.unfinished)


def _history_trial(
    params: dict[str, Any], dists: dict[str, BaseDistribution], rec: Record, label: str
) -> FrozenTrial:
    values = list(rec.values or ())
    return optuna.trial.create_trial(
        params=params,
        distributions={k: dists[k] for k in params},
        values=values,
        intermediate_values=rec.intermediate,
        system_attrs={ATTR_WARM: label},
    )


def _best_first(
    spec: StudySpec, configs: list[tuple[dict[str, Any], Record]], k: int, name: str
) -> list[tuple[dict[str, Any], str]]:
    """The ``k`` best distinct configurations (a params file: in its order)."""
    scored = [(p, r) for p, r in configs if r.values is not None]
    order: Iterable[tuple[dict[str, Any], Record]] = configs
    if scored:
        maximize = [m.direction == "maximize" for m in spec.metrics]
        order = (scored[i] for i in ranked([r.values or () for _, r in scored], maximize))
    seen: set[str] = set()
    first: list[tuple[dict[str, Any], str]] = []
    for params, rec in order:
        if len(first) >= k:
            break
        key = json.dumps(params, sort_keys=True, default=repr)
        if key not in seen:
            seen.add(key)
            first.append((params, f"{name} {rec.label}"))
    return first


def fit(
    spec: StudySpec, params: dict[str, Any], text: bool = False
) -> tuple[dict[str, Any] | None, str | None]:
    """``params`` projected onto ``spec``'s space, or (None, why) when they do not fit.

    Args:
        text: the values are strings (read from CSV), typed by each parameter of the space.
    """
    chosen: dict[str, Any] = {}
    for name in ordered(spec.space):
        param = spec.space[name]
        if not is_active(param, chosen):
            continue
        if name not in params:
            return None, MISSING
        value = _coerce(param, params[name], text)
        if value is _NO:
            return None, OUTSIDE
        chosen[name] = value
    return chosen, None


_NO = object()


def _coerce(param: Any, raw: Any, text: bool) -> Any:
    """``raw`` as a value of ``param``, or ``_NO`` when the parameter cannot take it."""
    if isinstance(param, CategoricalParam):
        for choice in param.choices:
            if text and (str(choice) == raw or _number(raw) == choice and _numeric(choice)):
                return choice
            if not text and choice == raw and isinstance(raw, bool) == isinstance(choice, bool):
                return choice
        return _NO
    value = _number(raw) if text else raw
    if not _numeric(value) or not math.isfinite(value):
        return _NO
    if param.low is None or param.high is None:  # values only
        return value if value in (param.values or []) else _NO
    if not param.low <= value <= param.high:
        return _NO
    if isinstance(param, FloatParam):
        if param.step is not None:
            steps = (value - param.low) / param.step
            if abs(steps - round(steps)) > 1e-8:
                return _NO
        return float(value)
    if value != int(value) or (int(value) - param.low) % param.step:
        return _NO
    return int(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return _NO


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """Each parameter's distribution exactly as ``hpo.study.search.suggest`` asks for it, so a
    sampler treats history trials as its own."""
    out: dict[str, BaseDistribution] = {}
    for name, p in spec.space.items():
        if isinstance(p, CategoricalParam):
            out[name] = CategoricalDistribution(p.choices)
        elif isinstance(p, FloatParam):
            out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)  # type: ignore[arg-type]
        else:
            out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)  # type: ignore[arg-type]
    return out


def apply(study: optuna.Study, storage: Storage, plan: WarmPlan, budget: int | None) -> str:
    """Add the history and enqueue the first trials (at most ``budget``); returns the line
    that says so. Call once, where the study is created, under the same lock."""
    if isinstance(storage, UpsertWrites) and storage.upserts:
        storage.add_finished_trials(study_id_of(study), plan.history)  # one transaction
    else:
        study.add_trials(plan.history)
    first = plan.first if budget is None else plan.first[:budget]
    for params, label in first:
        study.enqueue_trial(params, user_attrs={ATTR_CONFIG: label})
    storage.set_study_system_attr(study_id_of(study), ATTR_WARM, plan.record(len(first)))
    line = plan.describe(len(first))
    log.info("%s", line)
    return line


def history_count(attrs: dict[str, Any]) -> int:
    """How many history trials a warm start added, from the study's system attrs."""
    record = attrs.get(ATTR_WARM)
    return int(record.get("history", 0)) if isinstance(record, dict) else 0


def check(spec: StudySpec, source: str) -> str:
    """What ``hpo validate`` can say without a storage: a file is read and fitted (raising
    as :func:`plan` would); a study is only named."""
    warm = spec.warm_start
    assert warm is not None
    if warm.study is not None:
        return f"warm start from study {warm.study!r} (read when the study is created)"
    return plan(spec, "", None, source).describe()
