"""Training-split augmentation: the parameters, and the per-sample pipeline for file datasets.

File datasets that are decoded every epoch augment in their transform pipeline (in the
DataLoader workers). Tensors held in memory or cached are augmented per batch on the training
device instead, by :class:`hpo.data.batch_augment.BatchAugment`: a cache of augmented images
would freeze one draw of the augmentation. Validation data is never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Augment:
    """How strongly to augment; every zero means off."""

    scale: float = 0.0  # random zoom: 0.5 = 0.5x to 1.5x
    fliplr: float = 0.0  # probability of a horizontal flip
    degrees: float = 0.0  # rotation in +- degrees
    shear: float = 0.0  # shear in +- degrees
    color_jitter: float = 0.0  # brightness, contrast, saturation factors in 1 +- this
    hue: float = 0.0  # hue shift in +- turns (at most 0.5)
    random_resized_crop: float = 0.0  # smallest share of the area a random crop keeps; 0 off

    @property
    def enabled(self) -> bool:
        return any(
            v > 0
            for v in (
                self.scale,
                self.fliplr,
                self.degrees,
                self.shear,
                self.color_jitter,
                self.hue,
                self.random_resized_crop,
            )
        )

    @property
    def geometric(self) -> bool:
        return any(v > 0 for v in (self.scale, self.degrees, self.shear, self.random_resized_crop))


def sample_transform(
    aug: Augment | None,
    size: int | None,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    *,
    raw: bool = False,
) -> Any:
    """The per-sample transform of a file dataset: augment (train only), resize, to tensor.

    ``raw`` yields uint8 tensors without normalisation, for caches; the trainer normalises
    those on the device.
    """
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage()]
    if aug is not None and aug.random_resized_crop > 0 and size is not None:
        steps.append(v2.RandomResizedCrop(size, scale=(aug.random_resized_crop, 1.0)))
    elif size is not None:
        steps += [v2.Resize(size), v2.CenterCrop(size)]
    if aug is not None and aug.enabled:
        steps += _augment_steps(aug)
    if raw:
        return v2.Compose([*steps, v2.ToDtype(torch.uint8, scale=True)])
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if mean is not None and std is not None:
        steps.append(v2.Normalize(mean, std))
    return v2.Compose(steps)


def _augment_steps(aug: Augment) -> list[Any]:
    from torchvision.transforms import v2

    steps: list[Any] = []
    if aug.fliplr > 0:
        steps.append(v2.RandomHorizontalFlip(aug.fliplr))
    if aug.scale > 0 or aug.degrees > 0 or aug.shear > 0:
        steps.append(
            v2.RandomAffine(
                degrees=aug.degrees,
                scale=(1 - aug.scale, 1 + aug.scale) if aug.scale > 0 else None,
                shear=aug.shear if aug.shear > 0 else None,
            )
        )
    if aug.color_jitter > 0 or aug.hue > 0:
        c = aug.color_jitter
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c, hue=aug.hue))
    return steps
