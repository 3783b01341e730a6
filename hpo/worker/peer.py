"""``python -m hpo.worker.peer``: rank 1..N-1 of a worker's process group.

A peer knows nothing of the study: it trains the runs rank 0 broadcasts, follows rank 0's
decision after every epoch, and exits when told (see :mod:`hpo.worker.group`). It dies with
rank 0 and ignores Ctrl-C and SIGTERM, which rank 0 turns into a decision at the epoch's end.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
from typing import Any

from hpo.keys import ENV_THREADS
from hpo.worker.group import COLLECTIVE_TIMEOUT, EXIT_PEER_OOM, backend, never, rank_device


class _Stopped(Exception):
    """Rank 0 decided to stop the run at this epoch."""


def _die_with_parent() -> None:
    """SIGKILL this process when rank 0 ends, however it ends (Linux; elsewhere the collective
    timeout ends it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # rank 0 was gone before the line above
        sys.exit(1)


def _serve(rank: int, world: int, device_name: str) -> None:
    """Train each run rank 0 sends until it sends None."""
    import torch
    import torch.distributed as dist

    from hpo.trainer import Group, fit, is_oom

    log = logging.getLogger("hpo.worker.peer")
    device = torch.device(device_name)

    def follow(epoch: int, metrics: dict[str, float]) -> None:
        flag = torch.zeros(1, dtype=torch.int64, device=device)
        dist.broadcast(flag, src=0)
        if int(flag.item()):
            raise _Stopped(f"stopped at epoch {epoch}")

    while True:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, device=device)
        job = box[0]
        if job is None:
            dist.barrier()
            return
        try:
            fit(
                job["config"],
                device,
                follow,
                never,
                monitor=job["monitor"],
                resume=job["resume"],
                group=Group(rank, world),
            )
        except _Stopped as exc:
            log.info("rank %d: %s (rank 0's decision)", rank, exc)
        except Exception as exc:  # noqa: BLE001 - rank 0 fails the trial and restarts the group
            if is_oom(exc):  # rank 0 sees the exit code and splits the batch
                log.warning("rank %d: out of memory: %s", rank, exc)
                logging.shutdown()
                os._exit(EXIT_PEER_OOM)
            log.warning("rank %d: run failed: %s: %s", rank, type(exc).__name__, exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpo.worker.peer")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args(argv)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s w{args.index} r{args.rank} %(levelname)s %(name)s: %(message)s",
    )
    import torch
    import torch.distributed as dist

    if os.environ.get(ENV_THREADS):
        torch.set_num_threads(int(os.environ[ENV_THREADS]))
    device = rank_device(args.device, args.rank)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    store = dist.TCPStore(
        "127.0.0.1", args.port, args.world, is_master=False, timeout=COLLECTIVE_TIMEOUT
    )
    dist.init_process_group(
        backend(args.device),
        store=store,
        rank=args.rank,
        world_size=args.world,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        _serve(args.rank, args.world, device)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
