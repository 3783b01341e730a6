"""A study read back (``hpo.load``): where it stands, its best trial (or Pareto front), every
trial as a plain record, the best models' weights, a report. It only reads the study; ``hpo
status``, ``best``, ``report`` and ``export`` print or write what it returns."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hpo.errors import HpoError, SpecError, StorageError
from hpo.keys import ATTR_FAIL_REASON

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.insight import Report
    from hpo.spec import StudySpec

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True)
class Best:
    """The best completed trial."""

    number: int
    value: float
    params: dict[str, Any]
    # Without ``fail_reason``: a completed retry carries its predecessor's, no reason here.
    user_attrs: dict[str, Any]
    trial: FrozenTrial = field(repr=False)  # the whole trial: intermediate values, times, ...


@dataclass(frozen=True)
class ParetoTrial:
    """A trial on a multi-metric study's Pareto front: no other completed trial is at least as
    good on every metric and better on one (Optuna's ``study.best_trials``)."""

    number: int
    values: tuple[float, ...]  # one per metric, in the study's order
    params: dict[str, Any]
    user_attrs: dict[str, Any]  # without ``fail_reason``, as :class:`Best`
    trial: FrozenTrial = field(repr=False)


@dataclass(frozen=True)
class Status:
    """Where a study stands. A budget slot is in the state of its latest trial, so a failed
    trial that was retried counts once, as its retry; ``counts`` counts every trial."""

    budget: int | None  # the study's total trial budget; None: no trial limit
    slots: dict[str, int]  # budget slots by state name (COMPLETE, PRUNED, FAIL, RUNNING, ...)
    counts: dict[str, int]  # trials by state name, retries included
    best: Best | None  # None until a trial completes (warm-start history never is), or with
    # several metrics: see ``front``
    latest: list[FrozenTrial] = field(default_factory=list, repr=False)  # status(last=N)
    epochs: int | None = None  # epochs trained over the study; None without an epoch budget
    max_epochs: int | None = None  # the epoch budget (budget.max_epochs_total)
    warm: int = 0  # warm-start history: an earlier study's trials, in no count or slot
    front: list[ParetoTrial] = field(default_factory=list)  # several metrics: the Pareto front

    @property
    def finished(self) -> int:
        """Budget slots finished (completed, pruned or failed for good)."""
        return sum(self.slots.get(s, 0) for s in FINISHED)

    @property
    def retries(self) -> int:
        """Trials that re-ran a failed or interrupted one (they take no budget slot)."""
        return sum(self.counts.values()) - sum(self.slots.values())


class StudyView:
    """A read-only view of one study in its storage (what :func:`hpo.load` returns)."""

    def __init__(self, study: optuna.Study, spec: StudySpec | None, url: str) -> None:
        self.study = study  # the Optuna study: plots, ``trials_dataframe()``, ...
        self.spec = spec  # None when opened by name
        self._url = url

    def __repr__(self) -> str:
        return f"StudyView({self.name!r}, storage={self.storage!r})"

    @property
    def name(self) -> str:
        return self.study.study_name

    @property
    def storage(self) -> str:
        """The storage URL, password hidden."""
        from hpo.study import redact

        return redact(self._url)

    @property
    def metric(self) -> str:
        """The metric's name (names, joined, for several): the spec's, else the one the study
        recorded at creation."""
        if self.spec is not None:
            return ", ".join(m.name for m in self.spec.metrics)
        from hpo.study import ATTR_METRIC, system_attrs

        return str(system_attrs(self.study).get(ATTR_METRIC, "value"))

    @property
    def direction(self) -> str:
        return self.study.direction.name.lower()

    @property
    def multi_objective(self) -> bool:
        """Whether the study has several metrics (a Pareto front, no single best trial)."""
        return len(self.study.directions) > 1

    def status(self, last: int = 0) -> Status:
        """Budget slots and trials by state, epochs trained (with an epoch budget), the best
        trial (several metrics: the Pareto front), and the ``last`` latest trials."""
        from hpo.study import epoch_count, get_budget, is_warm, slot_counts

        every = self.study.get_trials(deepcopy=False)
        trials = [t for t in every if not is_warm(t)]
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        slots = slot_counts(trials)
        budget = get_budget(self.study)
        if budget == 0:  # not prepared by hpo: what the spec asks for
            budget = self.spec.n_trials if self.spec else 0
        latest = [copy.deepcopy(t) for t in trials[-last:]] if last > 0 else []
        epochs = epoch_count(self.study)
        used, limit = (epochs.used, epochs.budget) if epochs else (None, None)
        warm = len(every) - len(trials)
        if self.multi_objective:
            return Status(budget, slots, counts, None, latest, used, limit, warm, self.front())
        return Status(budget, slots, counts, self._best(), latest, used, limit, warm)

    def best(self) -> Best:
        """The best of the study's own completed trials (never warm-start history).

        Raises:
            StorageError: no trial has completed yet.
            HpoError: the study has several metrics (no single best trial: see :meth:`front`).
        """
        if self.multi_objective:
            raise HpoError(f"study {self.name!r} has several metrics: its best are front()")
        best = self._best()
        if best is None:
            raise StorageError(f"study {self.name!r} has no completed trial yet")
        return best

    def _best(self) -> Best | None:
        from hpo.study import own_best

        trial = own_best(self.study)
        if trial is None:
            return None
        assert trial.value is not None
        return Best(trial.number, trial.value, dict(trial.params), _attrs(trial), trial)

    def front(self) -> list[ParetoTrial]:
        """The Pareto front of the study's own completed trials (never warm-start history), by
        trial number; empty before a trial completes. For a study of one metric, the trials
        tied for best."""
        from hpo.study import own_front

        return [
            ParetoTrial(t.number, tuple(t.values), dict(t.params), _attrs(t), t)
            for t in own_front(self.study)
        ]

    def trials(self) -> list[dict[str, Any]]:
        """Every trial as the plain, JSON-ready record ``hpo export --format json`` writes:
        number, state, value, times, params, user attrs, intermediate values."""
        from hpo.insight import trial_records

        return trial_records(self.study)

    def best_model(
        self,
        download_dir: str | os.PathLike[str],
        artifacts: str | None = None,
        trial: int | None = None,
    ) -> Path:
        """Download the best trial's ``best_model.pt`` into ``download_dir``; returns its path
        (``trial-<number>-best_model.pt``).

        Args:
            artifacts: the artifact store (else HPO_ARTIFACTS, else the spec's
                ``artifacts.path``, else ``./hpo-artifacts``).
            trial: another trial's number, e.g. one of :meth:`front` (several metrics).

        Raises:
            StorageError: no completed trial, no such trial, or it has no best-model artifact.
        """
        from hpo.spec import ArtifactSpec
        from hpo.study import download_best, open_store, resolve_artifacts

        chosen = self.best().trial if trial is None else self._trial(trial)
        default = (self.spec.artifacts if self.spec else ArtifactSpec()).path
        store = open_store(resolve_artifacts(artifacts, default))
        return download_best(self.study, chosen, store, Path(download_dir))

    def _trial(self, number: int) -> FrozenTrial:
        for t in self.study.get_trials(deepcopy=False):
            if t.number == number:
                return t
        raise StorageError(f"study {self.name!r} has no trial {number}")

    def report(self, directory: str | os.PathLike[str]) -> Report:
        """Write ``hpo report``'s folder: report.html (offline), a PNG per plot,
        best_params.yaml (several metrics: pareto_front.yaml) and trials.csv.

        Returns:
            The files written and the plots skipped, with why (too few trials, ...).
        """
        from hpo.insight import write_report

        return write_report(self.study, Path(directory), self.storage)

    def export(self, stream: IO[str], fmt: str = "csv") -> int:
        """Write every trial to ``stream`` as ``hpo export`` does: ``fmt`` "csv" (a row per
        trial) or "json" (the study's name, metrics, directions and :meth:`trials`). Returns
        how many trials were written.

        Raises:
            SpecError: ``fmt`` is neither.
        """
        from hpo.insight import write_trials

        if fmt not in ("csv", "json"):
            raise SpecError(f"fmt: {fmt!r} is not csv or json")
        return write_trials(self.study, stream, "json" if fmt == "json" else "csv")


def _attrs(trial: FrozenTrial) -> dict[str, Any]:
    """User attrs without ``fail_reason``: a completed retry carries its predecessor's."""
    return {k: v for k, v in trial.user_attrs.items() if k != ATTR_FAIL_REASON}
