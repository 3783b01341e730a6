"""``batch_size: auto``: the largest micro-batch whose training step fits in device memory.

The search doubles the batch until a step runs out of memory (or reaches the cap), then
bisects between the last size that fit and the first that did not, with cuDNN's autotuner off
(it would time every algorithm again for each size tried). Results are cached in
this process per (model, input shape, device, precision, optimizer), so the trials a worker
runs one after another search once. The probe is injectable: tests simulate a memory limit.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hpo.trainer.config import TrainConfig
from hpo.trainer.oom import is_oom
from hpo.trainer.optim import build_optimizer, param_groups
from hpo.trainer.runtime import channels_last

if TYPE_CHECKING:
    from hpo.trainer.inputs import Inputs
    from hpo.trainer.precision import Precision

log = logging.getLogger(__name__)

#: Runs one training step on a batch of n samples; raises ``torch.OutOfMemoryError`` if it
#: does not fit.
Probe = Callable[[int], None]

#: The largest batch ever tried; the search also stops at the dataset's size.
MAX_BATCH = 4096
#: Without a memory to measure (CPU), auto means this.
CPU_BATCH = 64

_FOUND: dict[Hashable, int] = {}


def _fits(probe: Probe, n: int) -> bool:
    try:
        probe(n)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not is_oom(exc):
            raise
        return False
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return True


def largest_batch(probe: Probe, cap: int, start: int = 2) -> int:
    """The largest n <= ``cap`` for which ``probe(n)`` does not run out of memory.

    Raises:
        torch.OutOfMemoryError: not even ``start`` samples fit.
    """
    start = min(start, cap)
    if not _fits(probe, start):
        raise torch.OutOfMemoryError(f"a batch of {start} does not fit in device memory")
    good, bad = start, None
    while bad is None and good < cap:  # double until a step fails or the cap is reached
        trial = min(cap, good * 2)
        if _fits(probe, trial):
            good = trial
        else:
            bad = trial
    while bad is not None and bad - good > 1:  # bisect between the last fit and the first miss
        mid = (good + bad) // 2
        if _fits(probe, mid):
            good = mid
        else:
            bad = mid
    return good


@contextlib.contextmanager
def no_autotuning() -> Iterator[None]:
    """cuDNN's autotuner off for the search: it times every algorithm for each new input shape,
    and a search tries a dozen shapes (ResNet-50 at 224 px on an H200: 52 s of setup)."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def training_probe(
    model: nn.Module,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    shape: tuple[int, ...],
    num_classes: int,
    autocast: Callable[[], torch.autocast],
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Probe:
    """A probe that runs forward, backward and an optimizer step on a copy of ``model``, with
    inputs in the memory format training uses (NHWC activations take other kernels)."""
    twin = copy.deepcopy(model)  # the real model's weights and BN statistics stay untouched

    def probe(n: int) -> None:
        optimizer = make_optimizer(twin)
        x = torch.randn(n, *shape, device=device).contiguous(memory_format=memory_format)
        y = torch.randint(0, num_classes, (n,), device=device)
        try:
            with autocast():
                loss = F.cross_entropy(twin(x), y)
            loss.backward()
            optimizer.step()  # allocates the optimizer state too (Adam: two buffers)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        finally:
            optimizer.zero_grad(set_to_none=True)
            del optimizer, x, y

    return probe


def resolve_batch_size(
    key: Hashable, device: torch.device, cap: int, make_probe: Callable[[], Probe] | None
) -> int:
    """The auto batch size for ``key``: cached, else searched with ``make_probe()``.

    On CPU without a probe there is no memory to measure: :data:`CPU_BATCH` (at most ``cap``).
    """
    cap = max(1, min(cap, MAX_BATCH))
    if make_probe is None:
        return min(CPU_BATCH, cap)
    full_key = (key, str(device), cap)
    if full_key not in _FOUND:
        with no_autotuning():
            _FOUND[full_key] = largest_batch(make_probe(), cap)
        log.info("batch_size auto: %d for %s", _FOUND[full_key], key)
    return _FOUND[full_key]


def probe_for(
    model: nn.Module,
    config: TrainConfig,
    optimizer_name: str,
    inputs: Inputs,
    precision: Precision,
    device: torch.device,
) -> Callable[[], Probe] | None:
    """How to probe ``model``'s training step on ``device``; None on CPU (nothing to measure)."""
    if device.type != "cuda":
        return None

    def make() -> Probe:
        return training_probe(
            model,
            lambda m: build_optimizer(config, param_groups(m, config), optimizer_name),
            inputs.sample_shape,
            inputs.data.num_classes,
            lambda: precision.autocast(device),
            device,
            torch.channels_last if channels_last(config, device) else torch.contiguous_format,
        )

    return make
