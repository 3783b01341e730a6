"""What a node's supervisor watches while its workers run: the study's progress and stale
trials (on a timer), and the first trials' failures (a broken objective stops the run)."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

from hpo.dispatch.plan import WorkerPlan
from hpo.dispatch.supervisor import Supervisor
from hpo.errors import StorageError
from hpo.spec import StudySpec
from hpo.study import Snapshot, StudyHandle, fail_stale, snapshot

log = logging.getLogger(__name__)


class Observer(Protocol):
    """What the console layer implements to show progress."""

    def started(
        self,
        spec: StudySpec,
        storage: str,
        plans: list[WorkerPlan],
        budget: int | None,
        max_epochs: int | None = None,
    ) -> None: ...
    def event(self, event: dict[str, Any]) -> None: ...
    def snapshot(self, snap: Snapshot) -> None: ...


class FirstFailures:
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


class Ticker:
    """The supervisor's periodic work, on its main thread: the workers' events (printed
    lines), the progress display, and failing other nodes' trials whose heartbeat lapsed (on
    a timer, so a dead node's trial is retried within about ``grace_period`` even while this
    node's workers are busy with long trials).

    Workers' events arrive on reader threads and wait in a queue (the storage is not read
    from those threads); each tick shows them, and when a trial started or finished among
    them, re-reads the counts at once (a worker says so after its state is committed), so
    the header changes with the lines printed above it.

    Once the storage has stayed unreachable past ``retry.storage_outage`` (``lost`` holds the
    error) the ticker stops calling it, so the node winds down within one outage limit.
    """

    def __init__(
        self,
        handle: StudyHandle,
        spec: StudySpec,
        observer: Observer,
        watch: Callable[[dict[str, Any]], None] = lambda event: None,
        spare_live: Callable[[dict[str, Any]], bool] = lambda attrs: False,
    ) -> None:
        self.handle, self.observer, self.retry, self.watch = handle, observer, spec.retry, watch
        self.spare_live = spare_live  # whether a trial's worker (by its attrs) is alive here
        self.every, self.last, self.next_stale = 2.0, 0.0, 0.0
        self.lost: StorageError | None = None
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def put(self, event: dict[str, Any]) -> None:
        """Take a worker's event (any thread): watched at once (a broken objective stops the
        workers before they fail more trials), shown at the next tick."""
        self.watch(event)
        self.events.put(event)

    def __call__(self, force: bool = False) -> None:
        force = self._drain() or force
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

    def _drain(self) -> bool:
        """Show the queued events; whether a trial started or finished among them."""
        moved = False
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return moved
            self.observer.event(event)
            moved = moved or event.get("event") in ("trial_start", "trial_end")

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
        # The storage judges no heartbeat during an outage or a grace period after it; this
        # node's own live workers are spared whatever their heartbeat says.
        fail_stale(self.handle.study, self.retry.max_retries, self.spare_live)

    def final(self) -> Snapshot:
        """The study's state at the end; raises the storage error if the storage was lost."""
        if self.lost is not None:
            raise self.lost
        return snapshot(self.handle.study)
