"""The dataset options of a training config: one mapping, shared by the trainer and the
dispatcher's prepare step (which fetches the data once per node, before workers start)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpo.data._registry import DataOptions
from hpo.data.augment import Augment

if TYPE_CHECKING:
    from hpo.trainer import TrainConfig  # the type only: data never imports the trainer


def augment_of(config: TrainConfig) -> Augment:
    """The augmentation parameters of ``config``."""
    return Augment(
        scale=config.scale,
        fliplr=config.fliplr,
        degrees=config.degrees,
        shear=config.shear,
        color_jitter=config.color_jitter,
        hue=config.hue,
        random_resized_crop=config.random_resized_crop,
    )


def data_options(config: TrainConfig, image_size: int | None, *, raw: bool = False) -> DataOptions:
    """The dataset builder's options for ``config`` (shared with the dispatcher's prepare step)."""
    return DataOptions(
        data_dir=config.data_dir,
        download=config.download,
        image_size=image_size,
        val_fraction=config.val_fraction,
        num_classes=config.num_classes,
        samples=config.fake_samples,
        augment=None if raw else augment_of(config),
        raw=raw,
        flowers102_split=config.flowers102_split,
        args=config.dataset_args,
        options=config.model_dump(exclude={"model_args", "dataset_args"}),
    )
