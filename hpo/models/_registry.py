"""The explicit name -> builder table and the one entry point, :func:`build_model`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpo.models import _torchvision

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """How to build a model, and the smallest image side it accepts."""

    builder: Callable[[int, int, int], nn.Module]  # (num_classes, in_channels, image_size)
    min_size: int


def _cnn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    from hpo.models._cnn import SmallCNN

    return SmallCNN(num_classes, in_channels)


MODELS: dict[str, ModelEntry] = {
    "cnn": ModelEntry(_cnn, min_size=4),
    "resnet18": ModelEntry(_torchvision.resnet("resnet18"), min_size=8),
    "resnet34": ModelEntry(_torchvision.resnet("resnet34"), min_size=8),
    "resnet50": ModelEntry(_torchvision.resnet("resnet50"), min_size=8),
    "mobilenet_v3_small": ModelEntry(_torchvision.classifier("mobilenet_v3_small"), min_size=32),
    "efficientnet_b0": ModelEntry(_torchvision.classifier("efficientnet_b0"), min_size=32),
    "vgg11_bn": ModelEntry(_torchvision.classifier("vgg11_bn"), min_size=32),
}


def build_model(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build model ``name`` for ``num_classes`` outputs on ``in_channels`` x image_size² inputs."""
    entry = MODELS[name]
    if image_size < entry.min_size:
        raise ValueError(f"model {name} needs images of at least {entry.min_size}px")
    return entry.builder(num_classes, in_channels, image_size)
