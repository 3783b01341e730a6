"""Which worker processes a node runs: one per GPU, or N CPU workers. Pure logic, no CUDA."""

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
    """One worker process: its index on the node, device, pinned GPU and torch threads."""

    index: int
    device: str  # "cpu" or "cuda"
    gpu: str | None
    threads: int

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
    device: str, gpus: str | None, workers: int | None, detected: list[str], cpu_count: int
) -> list[WorkerPlan]:
    """One worker per selected GPU (``--workers`` spreads N over them), else N CPU workers.

    Raises:
        SpecError: ``--device cuda`` without a GPU, or ``--gpus`` naming an absent GPU.
    """
    if workers is not None and workers < 1:
        raise SpecError("--workers: must be at least 1")
    if device not in ("auto", "cpu", "cuda"):
        raise SpecError(f"--device: {device!r} is not one of auto, cpu, cuda")
    selected = [] if device == "cpu" else _select(gpus, detected)
    if device == "cuda" and not selected:
        raise SpecError("--device cuda: no GPU found on this node")
    if selected:
        n = workers or len(selected)
        threads = max(1, cpu_count // n)
        return [WorkerPlan(i, "cuda", selected[i % len(selected)], threads) for i in range(n)]
    n = workers or max(1, min(cpu_count, MAX_DEFAULT_CPU_WORKERS))
    threads = max(1, cpu_count // n)
    return [WorkerPlan(i, "cpu", None, threads) for i in range(n)]
