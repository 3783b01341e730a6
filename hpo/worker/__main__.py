"""``python -m hpo.worker``: the process the dispatcher starts, one per GPU (or CPU slot)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from hpo.errors import HpoError
from hpo.keys import ENV_ARTIFACTS, ENV_THREADS
from hpo.spec import StudySpec, by_value
from hpo.study import ENV_STORAGE, quiet_optuna
from hpo.worker.serve import WorkerContext, run_worker


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def _set_threads(threads: int, spec: StudySpec) -> None:
    """Limit intra-op threads to this worker's share of the node's cores.

    The trainer imports torch anyway, so it is told at once. A custom objective may never
    use torch, and importing it only to set this costs seconds of CPU per worker: torch reads
    ``OMP_NUM_THREADS`` when the objective imports it.
    """
    os.environ[ENV_THREADS] = str(threads)
    if spec.objective is None or "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpo.worker")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--node", default="localhost")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--deadline", type=float, default=None)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s w{args.index} %(levelname)s %(name)s: %(message)s",
    )
    quiet_optuna()
    if os.environ.get(by_value.ENV_OBJECTIVE_FILE):  # a function given to hpo.run, by value
        by_value.load(os.environ[by_value.ENV_OBJECTIVE_FILE])
    spec = StudySpec.model_validate_json(sys.stdin.read())
    if args.threads:
        _set_threads(args.threads, spec)
    if spec.objective is None and (spec.train.deterministic or "deterministic" in spec.space):
        from hpo.trainer import CUBLAS_ENV

        # cuBLAS reads this once, when CUDA starts in this process: before the first trial.
        os.environ.setdefault(*CUBLAS_ENV)
    stop = threading.Event()
    # Ctrl-C (forwarded by the supervisor) and SIGTERM (preemption, scancel, pod eviction) only
    # set a flag: the trainer stops at the next batch, never in the middle of a storage call.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ctx = WorkerContext(
        spec=spec,
        storage_url=os.environ[ENV_STORAGE],
        index=args.index,
        node=args.node,
        device=args.device,
        deadline=args.deadline,
        artifacts=os.environ.get(ENV_ARTIFACTS),
    )
    try:
        return run_worker(ctx, stop, _emit)
    except HpoError as exc:
        logging.error("%s", exc)
        _emit({"event": "fatal", "message": str(exc)})
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
