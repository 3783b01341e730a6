"""``hpo run`` on one node: prepare the study, start the workers, watch them, clean up."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from optuna.trial import TrialState

from hpo.dispatch.plan import WorkerPlan, detect_gpus, plan_workers
from hpo.dispatch.supervisor import Supervisor
from hpo.errors import SpecError
from hpo.models import MODELS
from hpo.spec import StudySpec
from hpo.study import (
    Snapshot,
    StudyHandle,
    get_budget,
    prepare,
    record_node,
    redact,
    requeue,
    snapshot,
)
from hpo.study.artifacts import ENV_ARTIFACTS

log = logging.getLogger(__name__)

#: Datasets fetched over the network: fetched once here, before workers start in parallel.
DOWNLOADED = ("mnist", "fashion_mnist", "cifar10", "flowers102")


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
    node: str = field(default_factory=socket.gethostname)


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


def _release_orphans(handle: StudyHandle, spec: StudySpec, node: str, pid: int, code: int) -> None:
    """A trial its worker left RUNNING (killed, crashed) is failed and retried at once,
    without waiting for its heartbeat to go stale (which still catches it if this fails)."""
    try:
        _requeue_trials_of(handle, spec, node, pid, code)
    except Exception as exc:  # noqa: BLE001 - storage down: the heartbeat path takes over
        log.warning("could not hand back the trial of worker pid %d: %s", pid, exc)


def _requeue_trials_of(
    handle: StudyHandle, spec: StudySpec, node: str, pid: int, code: int
) -> None:
    for t in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("node") == node and t.user_attrs.get("pid") == pid:
            requeue(handle.study, t._trial_id, f"worker died (exit {code})", spec.retry.max_retries)


class _Ticker:
    def __init__(self, handle: StudyHandle, observer: Observer, every: float = 2.0) -> None:
        self.handle, self.observer, self.every, self.last = handle, observer, every, 0.0

    def __call__(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            try:
                self.observer.snapshot(snapshot(self.handle.study))
            except Exception as exc:  # noqa: BLE001 - the display may lag; workers ride out outages
                log.warning("progress not refreshed: %s", exc)


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
    record_node(handle, options.node, sys.argv)
    timeout = options.timeout or spec.budget.timeout
    deadline = time.time() + timeout if timeout else None
    observer.started(spec, redact(options.storage_url), plans, get_budget(handle.study))
    sup = Supervisor(
        plans,
        spec.model_dump_json(exclude_unset=True),
        options.storage_url,
        options.node,
        deadline,
        options.logs_dir,
        observer.event,
        on_exit=lambda pid, code: _release_orphans(handle, spec, options.node, pid, code),
        env={ENV_ARTIFACTS: options.artifacts} if options.artifacts else None,
    )
    previous = signal.signal(signal.SIGTERM, lambda *_: sup.preempt())
    ticker = _Ticker(handle, observer)
    try:
        sup.start()
        code = sup.wait(ticker)
    finally:
        signal.signal(signal.SIGTERM, previous)
    ticker(force=True)
    return RunResult(code, snapshot(handle.study), sup.failed_logs())


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
