"""Which worker processes a node runs: one per GPU (or per N GPUs with ``gpus_per_trial`` N),
or CPU workers. Pure logic, no CUDA."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from hpo.errors import SpecError
from hpo.keys import ENV_THREADS, ENV_VISIBLE_GPUS

#: CPU workers by default: one per core, at most this many (tiny models gain little from
#: intra-op threads, so processes beat threads here).
MAX_DEFAULT_CPU_WORKERS = 8


@dataclass(frozen=True)
class WorkerPlan:
    """One worker: its index on the node, device, pinned GPU(s) and torch threads per process.

    A worker of ``ranks`` N > 1 is a data-parallel group: its process (rank 0) starts N - 1
    more, one per GPU of ``gpu`` (a comma-separated list of N ids), or N - 1 more CPU ones.
    """

    index: int
    device: str  # "cpu" or "cuda"
    gpu: str | None  # "0", or "0,1" for a group of two
    threads: int
    ranks: int = 1  # processes per trial (resources.gpus_per_trial)

    def env(self) -> dict[str, str]:
        """Environment overrides: the GPU pin (or none visible) and the thread count."""
        visible = self.gpu if self.gpu is not None else ""
        return {ENV_VISIBLE_GPUS: visible, ENV_THREADS: str(self.threads)}


def detect_gpus() -> list[str]:
    """GPU ids this node may use, without initialising CUDA in this process.

    ``CUDA_VISIBLE_DEVICES`` wins when set; otherwise ``nvidia-smi`` is asked.
    """
    visible = os.environ.get(ENV_VISIBLE_GPUS)
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _select(gpus: str | None, detected: list[str]) -> list[str]:
    if gpus in (None, "all"):
        return detected
    wanted = [g.strip() for g in gpus.split(",") if g.strip()]
    unknown = [g for g in wanted if g not in detected]
    if unknown:
        have = ",".join(detected) or "none"
        raise SpecError(f"--gpus: {','.join(unknown)} not among this node's GPUs ({have})")
    return wanted


def plan_workers(
    device: str,
    gpus: str | None,
    workers: int | None,
    detected: list[str],
    cpu_count: int,
    per_trial: int = 1,
) -> list[WorkerPlan]:
    """One worker per selected GPU (``--workers`` spreads N over them), else N CPU workers.

    With ``per_trial`` (``resources.gpus_per_trial``) P > 1, a worker is a group of P processes:
    G GPUs make G // P workers, each pinned to P GPUs of its own (``--workers`` spreads N
    groups over those G // P slots); on the CPU, ``--workers`` counts groups (default: the
    default CPU worker count // P, at least one) and the threads are shared by every process.

    Raises:
        SpecError: ``--device cuda`` without a GPU, ``--gpus`` naming an absent GPU, or fewer
            GPUs than one trial takes.
    """
    if workers is not None and workers < 1:
        raise SpecError("--workers: must be at least 1")
    if device not in ("auto", "cpu", "cuda"):
        raise SpecError(f"--device: {device!r} is not one of auto, cpu, cuda")
    selected = [] if device == "cpu" else _select(gpus, detected)
    if device == "cuda" and not selected:
        raise SpecError("--device cuda: no GPU found on this node")
    if selected:
        if len(selected) < per_trial:
            raise SpecError(
                f"resources.gpus_per_trial: {per_trial} GPUs per trial, but this node has "
                f"{len(selected)} ({','.join(selected) or 'none'}); lower it, or --device cpu"
            )
        slots = [selected[s : s + per_trial] for s in range(0, len(selected), per_trial)]
        slots = [slot for slot in slots if len(slot) == per_trial]
        n = workers or len(slots)
        threads = max(1, cpu_count // (n * per_trial))
        return [
            WorkerPlan(i, "cuda", ",".join(slots[i % len(slots)]), threads, per_trial)
            for i in range(n)
        ]
    n = workers or max(1, min(cpu_count, MAX_DEFAULT_CPU_WORKERS) // per_trial)
    threads = max(1, cpu_count // (n * per_trial))
    return [WorkerPlan(i, "cpu", None, threads, per_trial) for i in range(n)]
