"""Model registry: name -> builder of an ``nn.Module`` with the right head and input channels.

Builders import torch lazily so that reading the registry (spec validation) stays cheap. The
helpers in ``hpo.models.parts`` find a model's head and its stages (freezing, layer decay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.models._registry import (
    MODELS,
    USER_MODEL,
    ModelEntry,
    build_model,
    fetch_weights,
    model_entry,
)

if TYPE_CHECKING:
    from hpo.models.parts import head_name, stages

__all__ = [
    "MODELS",
    "USER_MODEL",
    "ModelEntry",
    "build_model",
    "fetch_weights",
    "head_name",
    "model_entry",
    "stages",
]


def __getattr__(name: str) -> Any:
    if name in ("head_name", "stages"):  # they import torch: loaded on first use
        from hpo.models import parts

        return getattr(parts, name)
    raise AttributeError(name)
