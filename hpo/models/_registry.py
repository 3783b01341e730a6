"""The explicit name -> builder table and the one entry point, :func:`build_model`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.models import _torchvision
from hpo.userfn import call_declared, declared, import_ref, is_ref

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    """How to build a model, the smallest image side it accepts, and its published weights."""

    builder: Callable[[int, int, int], nn.Module]  # (num_classes, in_channels, image_size)
    min_size: int
    weights: str | None = None  # torchvision model name whose default weights fit, if any
    transformer: bool = False  # trained with AdamW by convention (optimizer: auto)
    conv: bool = True  # a convolutional net (channels_last helps it on CUDA)

    @property
    def has_weights(self) -> bool:
        return self.weights is not None


def _cnn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    from hpo.models._cnn import SmallCNN

    return SmallCNN(num_classes, in_channels)


def _tv(name: str, builder: Callable[[int, int, int], nn.Module], min_size: int) -> ModelEntry:
    return ModelEntry(builder, min_size, weights=name)


MODELS: dict[str, ModelEntry] = {
    "cnn": ModelEntry(_cnn, min_size=4),
    "resnet18": _tv("resnet18", _torchvision.resnet("resnet18"), 8),
    "resnet34": _tv("resnet34", _torchvision.resnet("resnet34"), 8),
    "resnet50": _tv("resnet50", _torchvision.resnet("resnet50"), 8),
    "mobilenet_v3_small": _tv(
        "mobilenet_v3_small", _torchvision.classifier("mobilenet_v3_small"), 32
    ),
    "efficientnet_b0": _tv("efficientnet_b0", _torchvision.classifier("efficientnet_b0"), 32),
    "vgg11_bn": _tv("vgg11_bn", _torchvision.classifier("vgg11_bn"), 32),
    "convnext_tiny": ModelEntry(
        _torchvision.classifier("convnext_tiny"), 32, weights="convnext_tiny", transformer=True
    ),
    "vit_b_16": ModelEntry(
        _torchvision.vit("vit_b_16"), 32, weights="vit_b_16", transformer=True, conv=False
    ),
}


#: What hpo knows of a user's model (``module:function``): any input size, no published
#: weights, not assumed convolutional (``channels_last: auto`` stays off: a ``view`` in the
#: user's ``forward`` would fail on NHWC tensors), AdamW only by the small-data rule.
def _built_with_arguments(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    raise TypeError("a user's model is built by build_model, which passes its arguments")


USER_MODEL = ModelEntry(_built_with_arguments, min_size=0, conv=False)


def model_entry(name: str) -> ModelEntry:
    """The registry's entry for ``name``, or :data:`USER_MODEL` for a ``module:function``."""
    return USER_MODEL if is_ref(name) else MODELS[name]


def _user_model(
    ref: str, facts: Mapping[str, Any], args: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[nn.Module, bool]:
    """The user's model; whether it took ``dropout`` itself (then none is inserted)."""
    from torch import nn

    func = import_ref(ref)
    model = call_declared(func, {**args, "num_classes": facts["num_classes"]}, {**options, **facts})
    if not isinstance(model, nn.Module):
        raise TypeError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
    return model, "dropout" in declared(func).names


def build_model(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    *,
    pretrained: bool | str = False,
    download: bool = False,
    dropout: float | None = None,
    head: str | None = None,
    args: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` outputs on ``in_channels`` x image_size² inputs.

    With ``pretrained`` the weights load from the hub cache (``True``) or a file (a path), except
    the new head; ``dropout`` sets (or inserts) the dropout right before the head (``head``:
    its dotted name, default the last ``nn.Linear``).

    A ``module:function`` name calls the user's function with the parameters it declares:
    ``args`` (``train.model_args`` and the trial's own parameters), then ``num_classes``,
    ``in_channels``, ``image_size``, then ``options`` (the train config's values by name).
    """
    entry = model_entry(name)
    if image_size < entry.min_size:
        raise ValueError(f"model {name} needs images of at least {entry.min_size}px")
    took_dropout = False
    if entry is USER_MODEL:
        facts = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
        model, took_dropout = _user_model(name, facts, args or {}, options or {})
    else:
        model = entry.builder(num_classes, in_channels, image_size)
    if pretrained:
        from hpo.models._pretrained import load_pretrained

        load_pretrained(model, name, entry.weights, pretrained, download, head)
    if dropout is not None and not took_dropout:
        from hpo.models.parts import set_dropout

        set_dropout(model, dropout, head)
    return model


def fetch_weights(name: str, tv_name: str, download: bool) -> Path:
    """Make sure the torch hub cache holds ``tv_name``'s pretrained weights for model ``name``
    (downloading once if ``download``), so that parallel workers find the file.

    Raises:
        FileNotFoundError: absent and ``download`` is false.
    """
    from hpo.models import _pretrained  # torch only when called: the registry stays cheap

    return _pretrained.fetch_weights(name, tv_name, download)
