"""Starting and watching the worker processes of one node. Never touches CUDA itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hpo.dispatch.plan import WorkerPlan
from hpo.keys import ENV_STORAGE

log = logging.getLogger(__name__)

OnEvent = Callable[[dict[str, Any]], None]

#: A worker that dies by a signal or an unexpected exit code is restarted this many times.
MAX_RESTARTS = 3
#: Exit codes a worker returns on purpose: done, fatal, bad spec, interrupted.
DELIBERATE = {0, 1, 2, 130}


@dataclass
class _Child:
    plan: WorkerPlan
    proc: subprocess.Popen[str]
    log_path: Path
    restarts: int = 0
    pids: list[int] = field(default_factory=list)
    reported: bool = False


class Supervisor:
    """Runs one worker process per plan, restarts crashed ones, forwards stop signals."""

    def __init__(
        self,
        plans: list[WorkerPlan],
        spec_json: str,
        storage_url: str,
        node: str,
        deadline: float | None,
        logs_dir: Path,
        on_event: OnEvent,
        on_exit: Callable[[int, int], None] = lambda pid, code: None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = env or {}  # e.g. HPO_ARTIFACTS from --artifacts
        self.on_exit = on_exit  # (pid, exit code) of each worker process that ended
        self.plans, self.spec_json, self.storage_url = plans, spec_json, storage_url
        self.node, self.deadline, self.logs_dir, self.on_event = node, deadline, logs_dir, on_event
        self.children: list[_Child] = []
        self.stopping = False
        self.preempted = False
        self.lock = threading.Lock()

    def log_path(self, index: int) -> Path:
        """Where worker ``index`` logs (its tracebacks among them)."""
        return self.logs_dir / f"{self.node}-w{index}.log"

    def _spawn(self, plan: WorkerPlan) -> tuple[subprocess.Popen[str], Path]:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path(plan.index)
        cmd = [
            sys.executable,
            "-m",
            "hpo.worker",
            "--index",
            str(plan.index),
            "--node",
            self.node,
            "--device",
            plan.device,
            "--threads",
            str(plan.threads),
        ]
        if self.deadline is not None:
            cmd += ["--deadline", repr(self.deadline)]
        env = {
            **os.environ,
            **self.extra_env,
            **plan.env(),
            ENV_STORAGE: self.storage_url,
            "PYTHONUNBUFFERED": "1",
        }
        with open(log_path, "a") as err:
            # A session of its own: a terminal's Ctrl-C reaches only this supervisor, which
            # forwards it once, so a worker is never interrupted twice mid-cleanup.
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                text=True,
                start_new_session=True,
            )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(self.spec_json)
        proc.stdin.close()
        threading.Thread(target=self._read, args=(plan.index, proc.stdout), daemon=True).start()
        self.on_event(
            {
                "event": "worker_start",
                "worker": plan.index,
                "pid": proc.pid,
                "device": plan.device,
                "gpu": plan.gpu,
            }
        )
        return proc, log_path

    def _read(self, index: int, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                self.on_event({**event, "worker": index})

    def start(self) -> None:
        for plan in self.plans:
            proc, log_path = self._spawn(plan)
            self.children.append(_Child(plan, proc, log_path, pids=[proc.pid]))

    def live_pids(self) -> set[int]:
        """The pids of this node's worker processes that are running now."""
        return {c.proc.pid for c in self.children if c.proc.poll() is None}

    def holds(self, attrs: dict[str, Any]) -> bool:
        """Whether a trial (by its user attrs ``node`` and ``pid``) is held by a live worker
        of this node: its heartbeat may lapse (an outage) but its trial is not lost."""
        return attrs.get("node") == self.node and attrs.get("pid") in self.live_pids()

    def signal_all(self, sig: int) -> None:
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.send_signal(sig)

    def stop(self) -> None:
        """Ask every worker to stop at its next batch (the trial is handed back for retry)."""
        self.stopping = True
        self.signal_all(signal.SIGINT)

    def preempt(self) -> None:
        """SIGTERM from the cluster: workers hand their trials back and the node exits 0."""
        self.stopping = self.preempted = True
        self.signal_all(signal.SIGTERM)

    def poll(self) -> bool:
        """Restart crashed workers; True while any worker still runs."""
        running = False
        for child in self.children:
            code = child.proc.poll()
            if code is None:
                running = True
                continue
            if not child.reported:
                child.reported = True
                self.on_exit(child.proc.pid, code)
            if code in DELIBERATE or self.stopping or child.restarts >= MAX_RESTARTS:
                continue
            child.restarts += 1
            log.warning(
                "worker %d exited with %d; restarting (%d/%d)",
                child.plan.index,
                code,
                child.restarts,
                MAX_RESTARTS,
            )
            self.on_event({"event": "worker_restart", "worker": child.plan.index, "code": code})
            child.proc, child.log_path = self._spawn(child.plan)
            child.pids.append(child.proc.pid)
            child.reported = False
            running = True
        return running

    def wait(self, tick: Callable[[], None], interval: float = 0.5, grace: float = 60.0) -> int:
        """Supervise until every worker exits; Ctrl-C stops them cleanly (exit code 130).

        A second Ctrl-C, or ``grace`` seconds after the first, kills what is left.
        """
        stop_since: float | None = None
        while True:
            try:
                if not self.poll():
                    break
                tick()
                if stop_since is not None and time.monotonic() - stop_since > grace:
                    self.signal_all(signal.SIGKILL)
                time.sleep(interval)
            except KeyboardInterrupt:
                if stop_since is None:
                    stop_since = time.monotonic()
                    self.on_event({"event": "stopping"})
                    self.stop()
                else:
                    self.signal_all(signal.SIGKILL)
        tick()
        return self.exit_code()

    def exit_code(self) -> int:
        codes = [c.proc.returncode for c in self.children]
        if self.preempted:
            return 0
        if self.stopping:
            return 130
        if any(code not in (0, 130) for code in codes):
            return 1
        return 0

    def failed_logs(self) -> list[Path]:
        return [c.log_path for c in self.children if c.proc.returncode not in (0, 130)]
