"""One mixed-precision path: autocast with bf16 or fp16, and a GradScaler only for fp16."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hpo.trainer.config import TrainConfig


@dataclass(frozen=True)
class Precision:
    """What autocast and the gradient scaler use for one trial on one device."""

    enabled: bool
    dtype: torch.dtype

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.enabled)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        # bf16 has fp32's exponent range: no loss scaling needed, so the scaler is a no-op.
        return torch.amp.GradScaler(
            device.type, enabled=self.enabled and self.dtype is torch.float16
        )


def resolve_precision(config: TrainConfig, device: torch.device) -> Precision:
    """AMP on for CUDA when ``amp: auto``; bf16 falls back to fp16 on GPUs without it."""
    enabled = device.type == "cuda" if config.amp == "auto" else bool(config.amp)
    dtype = torch.bfloat16 if config.amp_dtype == "bf16" else torch.float16
    cuda_bf16 = enabled and dtype is torch.bfloat16 and device.type == "cuda"
    if cuda_bf16 and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return Precision(enabled, dtype)
