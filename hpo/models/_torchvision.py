"""Torchvision models with the head resized and the stem adapted to the input.

Weights start random here; pretrained weights are the transfer-learning path's business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

#: Below this image side a ResNet gets the CIFAR stem (3x3 stride-1 conv, no max-pool), so that
#: 32px or 8px images are not pooled away to nothing before the first stage.
SMALL_INPUT = 64


def _first_conv(conv: nn.Conv2d, in_channels: int, **overrides: object) -> nn.Conv2d:
    from torch import nn

    if in_channels == conv.in_channels and not overrides:
        return conv
    kwargs: dict[str, object] = {
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "bias": conv.bias is not None,
    }
    kwargs.update(overrides)
    return nn.Conv2d(in_channels, conv.out_channels, **kwargs)  # type: ignore[arg-type]


def resnet(name: str) -> Callable[[int, int, int], nn.Module]:
    """Builder for torchvision ResNet ``name``, with a small-image stem below 64px."""

    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        import torchvision
        from torch import nn

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        if image_size < SMALL_INPUT:
            model.conv1 = _first_conv(
                model.conv1, in_channels, kernel_size=3, stride=1, padding=1, bias=False
            )
            model.maxpool = nn.Identity()
        else:
            model.conv1 = _first_conv(model.conv1, in_channels)
        return model

    return build


def classifier(name: str) -> Callable[[int, int, int], nn.Module]:
    """Builder for a torchvision model whose head is ``classifier[-1]`` (VGG, MobileNet, ...)."""

    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        stem = model.features[0]
        conv_holder = stem if hasattr(stem, "weight") else stem[0]  # Conv2d or Conv2dNormActivation
        new_conv = _first_conv(conv_holder, in_channels)
        if stem is conv_holder:
            model.features[0] = new_conv
        else:
            stem[0] = new_conv
        return model

    return build


def vit(name: str, patch: int = 16) -> Callable[[int, int, int], nn.Module]:
    """Builder for a torchvision ViT at ``image_size`` (a multiple of the patch size)."""

    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        import torchvision

        if image_size % patch:
            raise ValueError(f"model {name} needs an image_size that is a multiple of {patch}")
        model = getattr(torchvision.models, name)(
            weights=None, num_classes=num_classes, image_size=image_size
        )
        model.conv_proj = _first_conv(model.conv_proj, in_channels)
        return model

    return build
