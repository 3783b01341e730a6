"""``hpo run`` on one node: prepare the study, start the workers, watch them, clean up."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from optuna.trial import TrialState

from hpo.dispatch.plan import WorkerPlan, detect_gpus, plan_workers
from hpo.dispatch.supervisor import DELIBERATE, Supervisor
from hpo.errors import SpecError, StorageError
from hpo.models import MODELS
from hpo.spec import ENV_OBJECTIVE_PATH, StudySpec, objective_root
from hpo.study import (
    Snapshot,
    StudyHandle,
    budget_used,
    connection_headroom,
    describe_setup,
    fail_stale,
    get_budget,
    prepare,
    record_node,
    redact,
    requeue,
    snapshot,
)
from hpo.study.artifacts import ENV_ARTIFACTS

log = logging.getLogger(__name__)

#: Overrides this node's name (default: the host name), e.g. one per Slurm task on a host.
ENV_NODE = "HPO_NODE_NAME"

#: Datasets fetched over the network: fetched once here, before workers start in parallel.
DOWNLOADED = ("mnist", "fashion_mnist", "cifar10", "flowers102")

#: A run stops once its first this many trials (retries are the same trial) all failed with the
#: same exception.
FIRST_FAILURES = 3


@dataclass(frozen=True)
class RunOptions:
    """Command-line overrides of one ``hpo run``."""

    storage_url: str
    n_trials: int | None = None
    timeout: float | None = None
    workers: int | None = None
    gpus: str | None = None
    device: str = "auto"
    logs_dir: Path = Path("hpo-logs")
    source: str = "spec"  # the spec's file name, for error messages
    artifacts: str | None = None  # --artifacts: checkpoints and best models
    node: str = field(default_factory=lambda: os.environ.get(ENV_NODE) or socket.gethostname())


class Observer(Protocol):
    """What the console layer implements to show progress."""

    def started(
        self, spec: StudySpec, storage: str, plans: list[WorkerPlan], budget: int
    ) -> None: ...
    def event(self, event: dict[str, Any]) -> None: ...
    def snapshot(self, snap: Snapshot) -> None: ...


@dataclass
class RunResult:
    """How the node's run ended."""

    exit_code: int
    snapshot: Snapshot
    failed_logs: list[Path]
    error: str | None = None  # why the run stopped early (exit code 1), printed once


def _prepare_data(spec: StudySpec) -> None:
    """Fetch datasets and pretrained weights once per node, before workers start in parallel."""
    if spec.objective is not None:
        return
    train = spec.train
    if train.dataset in DOWNLOADED:
        from hpo.data import prepare_data
        from hpo.trainer.loop import data_options

        try:
            prepare_data(train.dataset, data_options(train, train.image_size))
        except FileNotFoundError as exc:
            raise SpecError(f"train.dataset: {exc}") from None
    weights = MODELS[train.model].weights
    if train.pretrained is True and weights is not None:
        from hpo.models._pretrained import fetch_weights

        try:
            fetch_weights(train.model, weights, train.download)
        except FileNotFoundError as exc:
            raise SpecError(f"train.pretrained: {exc}") from None


def _release_orphans(
    handle: StudyHandle, spec: StudySpec, node: str, pid: int, code: int, sup: Supervisor
) -> None:
    """A trial its worker left RUNNING (killed, crashed) is failed and retried at once,
    without waiting for its heartbeat to go stale (which still catches it if this fails).

    A worker killed by a signal counts against its trial (the trial may have caused it); one
    that exited on purpose (1: the database was gone) or was stopped does not.
    """
    counted = code not in DELIBERATE and not sup.stopping
    try:
        for t in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("node") == node and t.user_attrs.get("pid") == pid:
                reason = f"worker died (exit {code})"
                requeue(handle.study, t._trial_id, reason, spec.retry.max_retries, counted)
    except Exception as exc:  # noqa: BLE001 - storage down: the heartbeat path takes over
        log.warning("could not hand back the trial of worker pid %d: %s", pid, exc)


class _FirstFailures:
    """Watches this node's first finished trials: when the first ``n`` trials all failed with
    the same exception (type and message) and none completed, the objective is broken (a bug,
    a missing file) and every further trial would burn the budget on it.

    A retry is the same trial (same slot, same parameters): its failures must match too, but
    it is not another trial, so one configuration that always raises never stops the run. Only
    exceptions count (``fail_reason`` ``error: ...``): an interruption, an OOM or a NaN loss
    says something about the parameters or the node, not the code.
    """

    def __init__(self, n: int) -> None:
        self.n, self.decided = n, False
        self.reasons: set[str] = set()
        self.trials: set[int] = set()  # original trial numbers (a retry counts as its original)
        self.error: str | None = None  # set once the run was stopped

    def watch(self, event: dict[str, Any], sup: Supervisor) -> None:
        """Stop ``sup``'s workers (their running trials are handed back, as on Ctrl-C) once the
        first trials failed alike, and say why in ``error``."""
        reason = self.see(event)
        if reason is not None:
            log_path = sup.log_path(int(event.get("worker", 0)))
            self.error = (
                f"stopped early: the first {self.n} trials failed alike: {reason} "
                f"(traceback in {log_path})"
            )
            sup.stop()

    def see(self, event: dict[str, Any]) -> str | None:
        """The common reason once the first ``n`` trials failed alike (once only), else None."""
        if self.decided or event.get("event") != "trial_end":
            return None
        reason = str(event.get("reason") or "")
        if event.get("state") == "FAIL" and reason.startswith("interrupted"):
            return None
        if event.get("state") != "FAIL" or not reason.startswith("error: "):
            self.decided = True
            return None
        self.reasons.add(reason)
        self.trials.add(int(event.get("root", event.get("trial", -1))))
        if len(self.reasons) > 1:
            self.decided = True
        elif len(self.trials) >= self.n:
            self.decided = True
            return reason.removeprefix("error: ")
        return None


class _Ticker:
    """The supervisor's periodic work: the progress display, and failing other nodes' trials
    whose heartbeat lapsed (on a timer, so a dead node's trial is retried within about
    ``grace_period`` even while this node's workers are busy with long trials).

    Once the storage has stayed unreachable past ``retry.storage_outage`` (``lost`` holds the
    error) the ticker stops calling it, so the node winds down within one outage limit.
    """

    def __init__(self, handle: StudyHandle, spec: StudySpec, observer: Observer) -> None:
        self.handle, self.observer, self.retry = handle, observer, spec.retry
        self.every, self.last, self.next_stale = 2.0, 0.0, 0.0
        self.lost: StorageError | None = None

    def __call__(self, force: bool = False) -> None:
        now = time.monotonic()
        if now >= self.next_stale:
            self.next_stale = now + self.retry.heartbeat_interval
            self._guarded(self._fail_stale, "stale-trial check skipped")
        if force or now - self.last >= self.every:
            self.last = now
            # The display may lag; workers ride out outages on their own.
            self._guarded(
                lambda: self.observer.snapshot(snapshot(self.handle.study)),
                "progress not refreshed",
            )

    def event(self, observer: Observer, event: dict[str, Any]) -> None:
        """Pass a worker's event on; a finished trial refreshes the counts at the next tick, so
        the header never lags the trial lines by more than one tick."""
        observer.event(event)
        if event.get("event") == "trial_end":
            self.last = 0.0

    def _guarded(self, work: Callable[[], object], what: str) -> None:
        if self.lost is not None:
            return
        try:
            work()
        except StorageError as exc:
            self.lost = exc
            log.warning("%s: %s", what, exc)
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            log.warning("%s: %s", what, exc)

    def _fail_stale(self) -> None:
        recently_down = getattr(self.handle.storage, "recently_down", None)
        if recently_down and recently_down(self.retry.grace_period):
            # No heartbeat could be written during the outage: judging now would fail live
            # trials. Wait a grace period after it.
            return
        fail_stale(self.handle.study, self.retry.max_retries)

    def final(self) -> Snapshot:
        """The study's state at the end; raises the storage error if the storage was lost."""
        if self.lost is not None:
            raise self.lost
        return snapshot(self.handle.study)


def _check_connections(handle: StudyHandle, workers: int) -> None:
    # One kept open by each worker and by this process, and a few opened for a moment (a lock,
    # a heartbeat written while the trial loop writes).
    try:
        warning = connection_headroom(handle.storage, workers + 1 + 2)
    except Exception as exc:  # noqa: BLE001 - only advice
        log.debug("connection headroom unknown: %s", exc)
        return
    if warning:
        log.warning("%s", warning)


def _complete(handle: StudyHandle, budget: int) -> bool:
    """Every budget slot finished and nothing left to run or retry."""
    trials = handle.study.get_trials(deepcopy=False)
    unfinished = any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    return not unfinished and budget_used(trials) >= budget


def run_study(spec: StudySpec, options: RunOptions, observer: Observer) -> RunResult:
    """Create or join the study, run this node's workers until the budget or timeout is spent."""
    plans = plan_workers(
        options.device,
        options.gpus,
        options.workers,
        detect_gpus() if options.device != "cpu" else [],
        _cpu_count(),
    )
    _prepare_data(spec)  # before the storage: missing data or weights leave it untouched
    handle = prepare(spec, options.storage_url, options.n_trials, options.source)
    budget = get_budget(handle.study)
    record_node(handle, options.node, sys.argv, describe_setup(spec, budget))
    observer.started(spec, redact(options.storage_url), plans, budget)
    if _complete(handle, budget):
        observer.event({"event": "already_complete", "study": spec.name, "budget": budget})
        return RunResult(0, snapshot(handle.study), [])
    _check_connections(handle, len(plans))
    timeout = options.timeout or spec.budget.timeout
    deadline = time.time() + timeout if timeout else None
    ticker = _Ticker(handle, spec, observer)
    first = _FirstFailures(min(FIRST_FAILURES, budget))

    def on_event(event: dict[str, Any]) -> None:
        ticker.event(observer, event)
        first.watch(event, sup)

    sup = Supervisor(
        plans,
        spec.model_dump_json(exclude_unset=True),
        options.storage_url,
        options.node,
        deadline,
        options.logs_dir,
        on_event,
        on_exit=lambda pid, code: (
            None if ticker.lost else _release_orphans(handle, spec, options.node, pid, code, sup)
        ),
        env=_worker_env(spec, options),
    )
    # Only the main thread may set a signal handler (hpo.run from a thread: no preemption).
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: sup.preempt()) if main else None
    try:
        sup.start()
        code = sup.wait(ticker)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    ticker(force=True)
    return RunResult(1 if first.error else code, ticker.final(), sup.failed_logs(), first.error)


def _worker_env(spec: StudySpec, options: RunOptions) -> dict[str, str]:
    """What workers get besides this process's environment: the artifact store from
    ``--artifacts``, and the directory the objective's module was imported from (beside the
    spec file, the working directory, ``PYTHONPATH``), so they import the same module."""
    env = {ENV_ARTIFACTS: options.artifacts} if options.artifacts else {}
    root = objective_root(spec.objective) if spec.objective else None
    if root is not None:
        env[ENV_OBJECTIVE_PATH] = root
    return env


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
