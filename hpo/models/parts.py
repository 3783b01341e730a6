"""A model's head and its stages from input to head: for head swaps, freezing and layer decay.

Works on the structure torchvision gives ResNet, VGG, MobileNet, EfficientNet, ConvNeXt and ViT,
and on the small CNN: the head is the last ``nn.Linear`` registered; the stages are the stem and
the blocks of the feature extractor, in the order the input flows through them.
"""

from __future__ import annotations

from torch import nn


def head_name(model: nn.Module, given: str | None = None) -> str:
    """The dotted name of the classification head: ``given`` (``train.head``, checked), else the
    last ``nn.Linear`` the model registers."""
    if given is not None:
        modules = dict(model.named_modules())
        if given not in modules or not given:
            raise ValueError(f"train.head: {type(model).__name__} has no module {given!r}")
        return given
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no linear head")
    return names[-1]


def _parent(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *path, leaf = dotted.split(".")
    parent = model
    for part in path:
        parent = parent.get_submodule(part)
    return parent, leaf


def set_dropout(model: nn.Module, p: float, head: str | None = None) -> None:
    """Dropout with probability ``p`` right before the head: the model's own, else a new one."""
    name = head_name(model, head)
    parent, leaf = _parent(model, name)
    if isinstance(parent, nn.Sequential) and leaf.isdigit() and int(leaf) > 0:
        before = parent[int(leaf) - 1]
        if isinstance(before, nn.Dropout):
            before.p = p
            return
    setattr(parent, leaf, nn.Sequential(nn.Dropout(p), parent.get_submodule(leaf)))


def _feature_blocks(prefix: str, features: nn.Module) -> list[list[str]]:
    """Blocks of a ``features`` Sequential: each container child, or each run from a Conv2d."""
    blocks: list[list[str]] = []
    for name, child in features.named_children():
        dotted = f"{prefix}.{name}"
        is_leaf = not any(True for _ in child.children())
        if is_leaf and blocks and not isinstance(child, nn.Conv2d):
            blocks[-1].append(dotted)  # BN, ReLU, pooling: part of the conv before them
        else:
            blocks.append([dotted])
    return blocks


def _stage_prefixes(model: nn.Module) -> list[list[str]]:
    """Parameter-name prefixes of each stage from the input up, the head excluded."""
    children = dict(model.named_children())
    if "layer1" in children and "conv1" in children:  # ResNet
        layers: list[list[str]] = [[n] for n in ("layer1", "layer2", "layer3", "layer4")]
        return [["conv1", "bn1"], *layers]
    if "conv_proj" in children:  # VisionTransformer
        encoder = model.get_submodule("encoder.layers")
        blocks = [[f"encoder.layers.{n}"] for n, _ in encoder.named_children()]
        return [["conv_proj", "class_token", "encoder.pos_embedding"], *blocks]
    if "features" in children:  # VGG, MobileNet, EfficientNet, ConvNeXt, the small CNN
        return _feature_blocks("features", children["features"])
    return []


def _matches(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def stages(model: nn.Module, head: str | None = None) -> list[list[str]]:
    """Parameter names grouped by stage, from the input to the head (the last group).

    Parameters outside the listed blocks (a VGG's hidden classifier layers, a ConvNeXt's final
    norm, a ViT's last LayerNorm) form one stage just below the head; a model of another shape
    (a user's own) has two stages, the head and the rest.
    """
    head = head_name(model, head)
    prefixes = _stage_prefixes(model)
    groups: list[list[str]] = [[] for _ in prefixes]
    neck: list[str] = []
    top: list[str] = []
    for name, _ in model.named_parameters():
        if _matches(name, [head]):
            top.append(name)
            continue
        index = next((i for i, p in enumerate(prefixes) if _matches(name, p)), None)
        (neck if index is None else groups[index]).append(name)
    return [g for g in [*groups, neck] if g] + [top]
