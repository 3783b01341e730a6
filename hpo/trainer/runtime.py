"""Process-wide speed and reproducibility settings for one run, and per-epoch seeds.

``deterministic: true`` turns on ``torch.use_deterministic_algorithms`` and cuDNN's
deterministic mode (and off its benchmark). It runs with ``warn_only``: a few CUDA kernels have
no deterministic version (the backward of adaptive average pooling, in every model here), and
an error would make the option useless on GPUs; they warn instead, so a CUDA run is
reproducible up to those ops, a CPU run exactly. On CUDA, cuBLAS additionally needs
``CUBLAS_WORKSPACE_CONFIG`` set before its first use, which the worker process does at start
(see :data:`CUBLAS_ENV`). Every setting is applied per run, so one trial's choice does not
leak into the next trial of the same worker.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from hpo.keys import ENV_CUBLAS_WORKSPACE
from hpo.models import model_entry
from hpo.trainer.config import TrainConfig

#: The cuBLAS setting deterministic CUDA runs need; set it before CUDA initialises.
CUBLAS_ENV = (ENV_CUBLAS_WORKSPACE, ":4096:8")


def configure(config: TrainConfig, device: torch.device) -> None:
    """Seed everything and set determinism and cuDNN autotuning for this run."""
    torch.manual_seed(config.seed)
    if config.deterministic:
        os.environ.setdefault(*CUBLAS_ENV)  # effective only if cuBLAS has not started yet
    current = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if current != (config.deterministic, config.deterministic):
        # Only on change: the call imports torch._inductor, seconds of startup per trial.
        torch.use_deterministic_algorithms(config.deterministic, warn_only=config.deterministic)
    torch.backends.cudnn.deterministic = config.deterministic
    # Autotuning picks kernels by timing them, which is not reproducible.
    torch.backends.cudnn.benchmark = (
        device.type == "cuda" and config.cudnn_benchmark and not config.deterministic
    )


def channels_last(config: TrainConfig, device: torch.device) -> bool:
    """NHWC helps convolutions on CUDA tensor cores; ``auto`` uses it for conv nets there."""
    if config.channels_last == "auto":
        return device.type == "cuda" and model_entry(config.model).conv
    return bool(config.channels_last)


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether ``a`` and ``b`` are one device: ``cuda`` (no index) is the current GPU, which a
    tensor on it reports as ``cuda:0``, so plain ``a == b`` says no."""
    if a.type != b.type:
        return False
    if a.index == b.index:
        return True
    if a.index is not None and b.index is not None:
        return False
    current = torch.cuda.current_device() if a.type == "cuda" else 0
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A seed for ``stream`` (data order, augmentation) of ``epoch``, independent of history."""
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63)


def maybe_compile(model: nn.Module, config: TrainConfig) -> nn.Module:
    """``torch.compile(model)`` when asked; the original module keeps the weights."""
    if not config.compile:
        return model
    return torch.compile(model)  # type: ignore[return-value]
