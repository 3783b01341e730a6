"""Checkpoint state: everything a run needs to continue after an epoch as if never stopped.

The state is a plain dict of CPU tensors and Python values (``torch.save``-able): model,
optimizer, schedule, gradient scaler, the global RNG states, early stopping and the history.
Data order and augmentation are drawn from generators reseeded from (seed, epoch) at the start
of every epoch, so they need no saved state.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

#: Bump when the layout of the state changes.
FORMAT = 1


def snapshot(obj: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU (training goes on mutating the live ones)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(snapshot(v) for v in obj)
    return obj


def rng_state() -> dict[str, Any]:
    """The global random states: torch (CPU and CUDA), Python, NumPy (no arrays: loadable with
    ``torch.load(weights_only=True)``)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert not isinstance(key, str)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (kind, key.tolist(), pos, has_gauss, gauss),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where the devices match)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))


def check_format(state: dict[str, Any]) -> None:
    """Raise ``ValueError`` for a state this version cannot resume from."""
    if state.get("format") != FORMAT:
        raise ValueError(f"checkpoint format {state.get('format')!r} is not {FORMAT}")
