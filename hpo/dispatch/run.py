"""``hpo run`` on one node: prepare the study, start the workers, watch them, clean up."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import TrialState

from hpo.dispatch.plan import detect_gpus, plan_workers
from hpo.dispatch.supervisor import DELIBERATE, Supervisor
from hpo.dispatch.watch import FirstFailures, Observer, Ticker
from hpo.errors import SpecError
from hpo.keys import ENV_ARTIFACTS, ENV_NODE
from hpo.models import model_entry
from hpo.spec import ENV_OBJECTIVE_PATH, StudySpec, objective_root
from hpo.study import (
    NODE_LOSS_WARNING,
    EpochCount,
    Snapshot,
    StudyHandle,
    behind_pooler,
    budget_used,
    connection_headroom,
    describe_setup,
    epoch_count,
    get_budget,
    prepare,
    record_node,
    redact,
    requeue,
    snapshot,
    trial_id_of,
)

log = logging.getLogger(__name__)


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
    env: Mapping[str, str] = field(default_factory=dict)  # more for workers (hpo.spec.by_value)
    node: str = field(default_factory=lambda: os.environ.get(ENV_NODE) or socket.gethostname())


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
        from hpo.data import data_options, prepare_data

        try:
            prepare_data(train.dataset, data_options(train, train.image_size))
        except FileNotFoundError as exc:
            raise SpecError(f"train.dataset: {exc}") from None
    weights = model_entry(train.model).weights
    if train.pretrained is True and weights is not None:
        from hpo.models import fetch_weights

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
                requeue(handle.study, trial_id_of(t), reason, spec.retry.max_retries, counted)
    except Exception as exc:  # noqa: BLE001 - storage down: the heartbeat path takes over
        log.warning("could not hand back the trial of worker pid %d: %s", pid, exc)


def _check_connections(handle: StudyHandle, workers: int) -> None:
    if behind_pooler(handle.storage):  # the pooler holds the server's connections
        return
    try:
        warning = connection_headroom(handle.storage, workers)
    except Exception as exc:  # noqa: BLE001 - only advice
        log.debug("connection headroom unknown: %s", exc)
        return
    if warning:
        log.warning("%s", warning)


def _complete(handle: StudyHandle, budget: int | None, epochs: EpochCount | None) -> bool:
    """Nothing is running, and either the epoch budget is spent (waiting trials stay for a
    raised budget) or every budget slot finished with nothing left to retry."""
    trials = handle.study.get_trials(deepcopy=False)
    if any(t.state == TrialState.RUNNING for t in trials):
        return False
    if epochs is not None and epochs.spent:
        return True
    waiting = any(t.state == TrialState.WAITING for t in trials)
    return not waiting and budget is not None and budget_used(trials) >= budget


def run_study(spec: StudySpec, options: RunOptions, observer: Observer) -> RunResult:
    """Create or join the study, run this node's workers until the budget or timeout is spent."""
    plans = plan_workers(
        options.device,
        options.gpus,
        options.workers,
        detect_gpus() if options.device != "cpu" else [],
        _cpu_count(),
        spec.resources.gpus_per_trial,
    )
    _prepare_data(spec)  # before the storage: missing data or weights leave it untouched
    if spec.logging.tensorboard == "auto" and not spec.tensorboard:
        log.warning(
            "no TensorBoard logs: the tensorboard package is not installed (pip install "
            "'hpo[tensorboard]'; logging: {tensorboard: false} says so without this warning)"
        )
    handle = prepare(spec, options.storage_url, options.n_trials, options.source)
    budget, epochs = get_budget(handle.study), epoch_count(handle.study)
    max_epochs = epochs.budget if epochs else None
    record_node(handle, options.node, sys.argv, describe_setup(spec, budget, max_epochs))
    observer.started(spec, redact(options.storage_url), plans, budget, max_epochs)
    if handle.warm_start:  # this node created the study and added its warm start
        observer.event({"event": "warm_start", "message": handle.warm_start})
    if _complete(handle, budget, epochs):
        observer.event(
            {
                "event": "already_complete",
                "study": spec.name,
                "budget": budget,
                **({"epochs": epochs.used, "max_epochs": epochs.budget} if epochs else {}),
            }
        )
        return RunResult(0, snapshot(handle.study), [])
    if options.storage_url.startswith("grpc://"):
        log.warning("%s", NODE_LOSS_WARNING)
    else:
        _check_connections(handle, len(plans))
    timeout = options.timeout or spec.budget.timeout
    deadline = time.time() + timeout if timeout else None
    first = FirstFailures(min(FIRST_FAILURES, budget or FIRST_FAILURES))
    ticker = Ticker(
        handle,
        spec,
        observer,
        lambda event: first.watch(event, sup),
        spare_live=lambda attrs: sup.holds(attrs),
    )

    sup = Supervisor(
        plans,
        spec.model_dump_json(exclude_unset=True),
        options.storage_url,
        options.node,
        deadline,
        options.logs_dir,
        ticker.put,
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
    ``--artifacts``, and the directories the user's modules (objective, or model and dataset)
    were imported from (beside the spec file, the working directory, ``PYTHONPATH``), so they
    import the same modules."""
    env = {ENV_ARTIFACTS: options.artifacts} if options.artifacts else {}
    env.update(options.env)
    roots = [r for r in map(objective_root, spec.user_code) if r is not None]
    if roots:
        env[ENV_OBJECTIVE_PATH] = os.pathsep.join(dict.fromkeys(roots))
    return env


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
