"""A worker of several processes (``resources: {gpus_per_trial: N}``): rank 0's side.

The worker process is rank 0. It alone talks to the study (claim, report, should_prune, tell,
heartbeat) and saves checkpoints; it starts N - 1 peers (``python -m hpo.worker.peer``), one
per GPU, and drives them over the process group:

- **A job per training run.** Before each ``fit`` rank 0 broadcasts the run's config, the
  monitored metric and the resume state it loaded (so every rank resumes from rank 0's
  checkpoint); ``None`` tells the peers to exit.
- **A decision per epoch.** After its ``on_epoch`` (report, should_prune) rank 0 broadcasts
  go or stop; a pruned, interrupted or budget-stopped trial thus stops on every rank at the
  same epoch, and the group stays in step for the next trial. Ctrl-C and SIGTERM reach rank 0
  only and take effect at the end of the epoch (a rank leaving mid-epoch would hang the rest).
- **A dead rank is a dead worker.** A watcher thread ends rank 0 (exit
  :data:`EXIT_RANK_DIED`) as soon as a peer dies; the trial is left RUNNING, and the supervisor
  fails and re-queues it as for any dead worker, then restarts the worker (a new group).
  Peers die with rank 0 (``PR_SET_PDEATHSIG``). Collectives time out
  (:data:`COLLECTIVE_TIMEOUT`), so a stuck rank never hangs the group.
- **A run that ends out of step** (an exception on rank 0 outside the epoch decision: a failed
  trial, an out-of-memory restart) restarts the peers, so the next run starts in step. A peer
  that runs out of memory exits with :data:`EXIT_PEER_OOM`, and rank 0 splits the batch as for
  its own OOM.

The trainer sees only a :class:`hpo.trainer.Group`; nothing here reaches the trainer's inside.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the trainer imports torch: a worker of a custom objective never does
    from hpo.trainer import Group

log = logging.getLogger(__name__)

#: The longest any collective may wait for a peer (the epoch decision waits while rank 0 reports
#: and saves its checkpoint): past it the collective fails instead of hanging.
COLLECTIVE_TIMEOUT = timedelta(seconds=300)
#: Rank 0's exit code when a peer died: not deliberate, so the supervisor re-queues the trial and
#: restarts the worker.
EXIT_RANK_DIED = 3
#: A peer's exit code when it ran out of memory: rank 0 restarts the group and splits the batch
#: (``retry.on_oom``) as if it had run out itself.
EXIT_PEER_OOM = 75
#: How long rank 0 waits, after a failed run, for a peer whose death caused it to be reaped.
DEATH_GRACE_S = 2.0


def backend(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.startswith("cuda") else "gloo"


def rank_device(device: str, rank: int) -> str:
    """The device of ``rank``: its own GPU of those the worker sees, or the CPU."""
    return f"cuda:{rank}" if device.startswith("cuda") else "cpu"


class Leader:
    """Rank 0 of a worker's process group: starts and drives the peers (see the module doc)."""

    def __init__(self, world: int, device: str, index: int = 0) -> None:
        self.world, self.device, self.index = world, rank_device(device, 0), index
        self.peers: list[subprocess.Popen[bytes]] = []
        self.synced = True  # every rank waits for the next job (False while a run goes on)
        self._closing = False
        self._generation = 0  # each start's watcher ends when the group is started again
        self.peer_oom = False  # a peer exited out of memory; rank 0 hears of it in recover()

    @property
    def group(self) -> Group:
        from hpo.trainer import Group

        return Group(0, self.world)

    @property
    def pids(self) -> list[int]:
        """Every rank's process id, rank 0 first."""
        return [os.getpid(), *(p.pid for p in self.peers)]

    def start(self) -> Leader:
        """Start the peers and form the process group (on a free port of 127.0.0.1)."""
        import torch
        import torch.distributed as dist

        if self.device.startswith("cuda"):
            torch.cuda.set_device(0)
        store = dist.TCPStore(
            "127.0.0.1", 0, self.world, is_master=True, timeout=COLLECTIVE_TIMEOUT,
            wait_for_workers=False,
        )  # fmt: skip
        self._closing = False
        self._generation += 1
        self.peers = [self._spawn(rank, store.port) for rank in range(1, self.world)]
        threading.Thread(target=self._watch, args=(self._generation,), daemon=True).start()
        dist.init_process_group(
            backend(self.device),
            store=store,
            rank=0,
            world_size=self.world,
            timeout=COLLECTIVE_TIMEOUT,
        )
        self.synced = True
        log.info("group of %d processes formed (pids %s)", self.world, self.pids)
        return self

    def _spawn(self, rank: int, port: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "hpo.worker.peer", "--rank", str(rank)]
        cmd += ["--world", str(self.world), "--port", str(port), "--device", self.device]
        cmd += ["--index", str(self.index)]
        # Its log lines go to this worker's log (stderr); it prints no events. Started from the
        # main thread: a peer's PR_SET_PDEATHSIG fires when the thread that started it ends.
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _watch(self, generation: int) -> None:
        while not self._closing and generation == self._generation:
            for rank, peer in enumerate(list(self.peers), 1):
                if peer.poll() is None or self._closing:
                    continue
                if peer.returncode == EXIT_PEER_OOM:
                    self.peer_oom = True  # rank 0's collective fails; recover() takes it from there
                else:
                    self._die(rank, peer)
            time.sleep(0.2)

    def _die(self, rank: int, peer: subprocess.Popen[bytes]) -> None:
        log.error(
            "rank %d (pid %d) died (exit %s): ending the worker, its trial is re-queued",
            rank,
            peer.pid,
            peer.returncode,
        )
        logging.shutdown()
        os._exit(EXIT_RANK_DIED)  # as if killed: the supervisor re-queues the trial

    def run(self, job: dict[str, Any]) -> None:
        """Send the next training run to every rank (``config``, ``monitor``, ``resume``)."""
        import torch.distributed as dist

        dist.broadcast_object_list([job], src=0, device=self._comm_device())
        self.synced = False

    def decide(self, stop: bool) -> None:
        """Broadcast this epoch's decision: stop (pruned, interrupted, budget spent) or go."""
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if stop else 0], device=self._comm_device())
        dist.broadcast(flag, src=0)
        if stop:
            self.synced = True

    def finished(self) -> None:
        """The run ended normally on every rank (after its last epoch's decision)."""
        self.synced = True

    def recover(self) -> bool:
        """After a run that ended out of step: end the worker if a peer died (its trial is then
        re-queued), else restart the peers so the next run starts in step.

        Returns:
            Whether a peer ran out of memory (the caller handles it as its own OOM).
        """
        deadline = time.monotonic() + DEATH_GRACE_S
        while time.monotonic() < deadline and not self.peer_oom:
            for rank, peer in enumerate(self.peers, 1):
                if peer.poll() == EXIT_PEER_OOM:
                    self.peer_oom = True
                elif peer.poll() is not None:
                    self._die(rank, peer)
            time.sleep(0.1)
        oom, self.peer_oom = self.peer_oom, False
        log.warning("the group is out of step after a failed run: restarting its processes")
        self._teardown(graceful=False)
        self.start()
        return oom

    def close(self) -> None:
        """Tell the peers to exit (or kill them when out of step) and leave the group."""
        self._teardown(graceful=self.synced)

    def _teardown(self, graceful: bool) -> None:
        import torch.distributed as dist

        self._closing = True
        if graceful:
            try:
                dist.broadcast_object_list([None], src=0, device=self._comm_device())
                dist.barrier()  # leave together: gloo may abort a rank whose peer left first
            except Exception as exc:  # noqa: BLE001 - the peers are killed below anyway
                log.warning("peers did not leave cleanly: %s", exc)
                graceful = False
        for peer in self.peers:
            if not graceful:
                peer.kill()
            try:
                peer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                peer.kill()
                peer.wait()
        if dist.is_initialized():
            dist.destroy_process_group()
        self.peers = []

    def _comm_device(self) -> Any:
        import torch

        return torch.device(self.device)


def never() -> bool:
    """``should_stop`` of every rank: a group stops only at an epoch's end, all together."""
    return False
