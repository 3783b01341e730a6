"""Recognising "out of memory", the one test the trainer's batch search and the worker's retry
policy share. Free of the torch import: a worker that never trained has nothing to recognise."""

from __future__ import annotations

import sys


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (or the host) ran out of memory."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
