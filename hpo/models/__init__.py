"""Model registry: name -> builder of an ``nn.Module`` with the right head and input channels.

Builders import torch lazily so that reading the registry (spec validation) stays cheap. The
helpers in ``hpo.models.parts`` find a model's head and its stages (freezing, layer decay).
"""

from __future__ import annotations

from hpo.models._registry import MODELS, ModelEntry, build_model, fetch_weights

__all__ = ["MODELS", "ModelEntry", "build_model", "fetch_weights"]
