"""The Python API: run a study and read it back, from a notebook or a script.

    import hpo

    result = hpo.run("studies/lr_batch.yaml", n_trials=8, workers=1)
    view = hpo.load("studies/lr_batch.yaml")
    view.status(), view.best(), view.trials(), view.best_model("weights/")

``hpo.run`` runs a study exactly as ``hpo run`` does (worker processes, the same storage
precedence, the same checks) and returns instead of exiting; ``hpo.load`` is what ``hpo status``,
``best``, ``report`` and ``export`` read; :func:`validate`, :func:`dashboard` and :func:`proxy`
are ``hpo validate``, ``hpo dashboard`` and ``hpo proxy``. The command line only parses options,
calls these and prints. Both raise :class:`~hpo.errors.HpoError` subclasses on failure: a
:class:`~hpo.errors.SpecError` for bad input, before anything is written. Imports happen inside
the functions, so ``import hpo`` stays cheap (no torch, no Optuna).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import SpecError
from hpo.resolve import Naming, SpecLike, keyword, locate, resolve_spec, storage_url
from hpo.resolve import flag as flag  # the command line's naming, for hpo.cli
from hpo.serve import Proxy, dashboard, proxy
from hpo.view import Best, ParetoTrial, Status, StudyView

if TYPE_CHECKING:
    import optuna

    from hpo.dispatch import Observer, WorkerPlan
    from hpo.spec import StudySpec
    from hpo.study import Snapshot

__all__ = [
    "Best",
    "Overrides",
    "ParetoTrial",
    "Proxy",
    "RunOutcome",
    "Status",
    "StudyView",
    "dashboard",
    "load",
    "proxy",
    "run",
    "validate",
]

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Overrides:
    """The ``hpo run`` options; None keeps the spec's value (or hpo's default)."""

    storage: str | None = None  # storage URL: wins over HPO_STORAGE and the spec's
    study_name: str | None = None  # the spec's name otherwise
    n_trials: int | None = None  # raise the study's total budget to this
    timeout: float | None = None  # seconds; no trial starts after
    workers: int | None = None  # worker processes on this node
    gpus: str | None = None  # 'all' or ids like '0,1'
    device: str = "auto"  # auto | cpu | cuda
    logs_dir: str | os.PathLike[str] = "hpo-logs"  # worker logs
    artifacts: str | None = None  # checkpoint/artifact store: a shared path or s3://bucket

    def check(self, naming: Naming = keyword) -> None:
        """Raise SpecError naming the first bad option, as the command line's parser would."""
        for name in ("n_trials", "workers"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise SpecError(f"{naming(name)}: {value!r} is not a whole number of at least 1")
        number = isinstance(self.timeout, int | float) and not isinstance(self.timeout, bool)
        if self.timeout is not None and not (number and self.timeout >= 0):
            raise SpecError(f"{naming('timeout')}: {self.timeout!r} is not a number of seconds")
        if self.device not in DEVICES:
            raise SpecError(f"{naming('device')}: {self.device!r} is not one of auto, cpu, cuda")
        for name in ("storage", "study_name", "gpus", "artifacts"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise SpecError(f"{naming(name)}: {value!r} is not a string")
        if not isinstance(self.logs_dir, str | os.PathLike):
            raise SpecError(f"{naming('logs_dir')}: {self.logs_dir!r} is not a path")


@dataclass(frozen=True)
class RunOutcome:
    """How a run on this node ended: its exit code (as ``hpo run`` exits), the study's counts
    and best trial, and the study itself (opened on first use)."""

    exit_code: int  # 0 done; 1 a worker or the storage failed; 130/143 stopped
    summary: Snapshot  # trials by state, best value, params and number
    name: str
    metric: str
    storage: str  # the URL, password hidden
    failed_logs: list[Path] = field(default_factory=list)  # logs of workers that failed
    url: str = field(default="", repr=False)
    error: str | None = None  # why exit_code is not 0, in one line (None when it is 0)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def study(self) -> optuna.Study:
        """The Optuna study, for reading (``study.trials``, ``optuna.visualization``)."""
        from hpo.study import find

        return find(self.name, self.url)


class _Quiet:
    """An observer that shows nothing (the default of ``hpo.run``)."""

    def started(
        self,
        spec: StudySpec,
        storage: str,
        plans: list[WorkerPlan],
        budget: int | None,
        max_epochs: int | None = None,
    ) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        pass

    def snapshot(self, snap: Snapshot) -> None:
        pass


def run(
    spec: SpecLike,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    workers: int | None = None,
    gpus: str | None = None,
    device: str = "auto",
    logs_dir: str | os.PathLike[str] = "hpo-logs",
    artifacts: str | None = None,
    progress: bool = False,
    objective: Callable[..., Any] | None = None,
) -> RunOutcome:
    """Create (or join) the study and run trials on this node until its budget or timeout is
    spent, as ``hpo run`` does; the keywords are its options.

    Args:
        spec: a study file's path, a dict of the same schema, or a StudySpec.
        progress: print one plain line per finished trial (quiet by default).
        objective: the function to tune, instead of the spec's ``objective:`` (a dict's
            ``objective`` may be the function too). One defined in a notebook or a script, a
            lambda or a closure is pickled by value (cloudpickle) for the worker processes.

    Returns:
        The outcome; a failed worker or a stop (Ctrl-C, SIGTERM) shows in ``exit_code``.

    Raises:
        SpecError: a bad spec or option (nothing written); StorageError and other HpoErrors
            as ``hpo run`` exits 1 on them.
    """
    overrides = Overrides(
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        timeout=timeout,
        workers=workers,
        gpus=gpus,
        device=device,
        logs_dir=logs_dir,
        artifacts=artifacts,
    )
    from rich.console import Console

    from hpo import console_log
    from hpo.progress import PlainProgress

    observer = PlainProgress(Console(soft_wrap=True, markup=False)) if progress else _Quiet()
    # As quiet as `hpo run`: warnings as one line `warning: ...`, no Optuna INFO lines; the
    # caller's logging is as it was afterwards.
    with console_log.installed(Console(stderr=True, soft_wrap=True, markup=False)):
        return start(spec, overrides, observer, objective=objective)


def start(
    spec: SpecLike,
    overrides: Overrides,
    observer: Observer,
    naming: Naming = keyword,
    objective: Callable[..., Any] | None = None,
) -> RunOutcome:
    """:func:`run` with any progress observer and option naming (what ``hpo run`` calls)."""
    from hpo.dispatch import RunOptions, run_study
    from hpo.spec import by_value
    from hpo.study import redact

    overrides.check(naming)
    spec, objective = _given(spec, objective)
    with by_value.shipped(objective) as (ref, env):
        study_spec, source = resolve_spec(spec, overrides.study_name, naming, ref)
        url = storage_url(overrides.storage, study_spec.storage, source, naming)
        if ref and by_value.ENV_OBJECTIVE_FILE in env:  # before the study: workers load it
            by_value.check(Path(env[by_value.ENV_OBJECTIVE_FILE]), ref, env)
        options = RunOptions(
            storage_url=url,
            n_trials=overrides.n_trials,
            timeout=overrides.timeout,
            workers=overrides.workers,
            gpus=overrides.gpus,
            device=overrides.device,
            logs_dir=Path(overrides.logs_dir),
            source=source,
            artifacts=overrides.artifacts,
            env=env,
        )
        result = run_study(study_spec, options, observer)
    return RunOutcome(
        result.exit_code,
        result.snapshot,
        study_spec.name,
        ", ".join(m.name for m in study_spec.metrics),
        redact(url),
        result.failed_logs,
        url,
        result.error or _why(result.exit_code, result.failed_logs),
    )


def _given(
    spec: SpecLike, objective: Callable[..., Any] | None
) -> tuple[SpecLike, Callable[..., Any] | None]:
    """The spec without a function under ``objective`` (a dict's), and the function."""
    if isinstance(spec, Mapping) and callable(spec.get("objective")):
        if objective is not None:
            raise SpecError("objective: given twice (in the spec and as objective=)")
        objective = spec["objective"]
        spec = {k: v for k, v in spec.items() if k != "objective"}
    return spec, objective


def _why(code: int, failed_logs: list[Path]) -> str | None:
    """Why a run that ended with ``code`` ended so, in one line (None when it did not fail)."""
    if code == 0:
        return None
    if code == 130:
        return "interrupted: the running trials were handed back for retry"
    for path in failed_logs:
        try:
            lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        except OSError:
            continue
        last = next((line for line in reversed(lines) if line), "")
        return (
            f"a worker failed: {last} (log: {path})" if last else f"a worker failed (log: {path})"
        )
    return f"the run ended with exit code {code}"


def load(
    target: SpecLike, storage: str | None = None, *, study_name: str | None = None
) -> StudyView:
    """Open a study for reading: by its spec (file, dict, StudySpec) or by its name.

    A string is a study file when it ends in ``.yaml``/``.yml``, holds a path separator or
    names an existing file; otherwise it is a study name, looked up in ``storage`` (else
    HPO_STORAGE, else ``./hpo.db``).

    Raises:
        SpecError: a bad spec or storage URL. StorageError: no such study (the message lists
            the studies the storage holds).
    """
    return open_view(target, storage, study_name)


def open_view(
    target: SpecLike | None,
    storage: str | None = None,
    study_name: str | None = None,
    naming: Naming = keyword,
) -> StudyView:
    """:func:`load` with option naming (what the commands that read a study call); ``target``
    None: the study named ``study_name``."""
    from hpo.study import find

    spec, url, name = locate(target, storage, study_name, naming)
    if name is None:
        raise SpecError(
            f"name the study: a study file, or {naming('study')} NAME "
            f"(with {naming('storage')} URL)"
        )
    return StudyView(find(name, url), spec, url)


def validate(path: str | os.PathLike[str]) -> str:
    """Check a study file without running it or opening its storage, as ``hpo validate`` does.

    Returns:
        What it describes: one line (name, sampler, pruner, budget, parameters, what trains,
        the metric and its direction),
        plus a line on the warm start (a warm start's file is read and fitted here).

    Raises:
        SpecError: the first problem, naming the file and the field.
    """
    from hpo.spec import describe_metrics, load_objective, load_spec, objective_form
    from hpo.study import check_warm_start

    spec = load_spec(Path(path))
    mode = (
        f"objective {spec.objective} ({objective_form(load_objective(spec.objective))})"
        if spec.objective
        else f"{spec.train.model} on {spec.train.dataset}"
    )
    if spec.resources.gpus_per_trial > 1:
        mode += f" ({spec.resources.gpus_per_trial} GPUs per trial)"
    limits = [] if spec.n_trials is None else [f"{spec.n_trials} trials"]
    if spec.budget.max_epochs_total is not None:
        limits.append(f"{spec.budget.max_epochs_total} epochs")
    lines = [
        f"{path}: ok: study {spec.name!r}, {spec.sampler.type} sampler, "
        f"{spec.pruner.type} pruner, {' or '.join(limits)}, {len(spec.space)} parameters, "
        f"{mode}, {describe_metrics(spec.metrics)}"
    ]
    if spec.warm_start:  # a study is read when the run creates it
        lines.append(check_warm_start(spec, str(path)))
    return "\n".join(lines)
