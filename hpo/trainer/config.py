"""The training configuration: every knob of the trainer, its default, and its check.

This is the one place where training defaults live. The study spec embeds it as ``train:``
and the search space may tune any of its fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hpo.data import DATASETS
from hpo.models import MODELS

#: Metrics the trainer reports after every epoch; a study's ``metric.name`` must be one of them.
METRICS = ("val_accuracy", "val_loss", "train_loss", "train_accuracy")

Optimizer = Literal["sgd", "adam", "adamw"]


class TrainConfig(BaseModel):
    """What one trial trains: model, data, optimisation and precision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("cnn", description="model name from the registry (hpo.models.MODELS)")
    dataset: str = Field("digits", description="dataset name from the registry (hpo.data.DATASETS)")
    data_dir: str = Field("./data", description="where datasets are read from / downloaded to")
    download: bool = Field(True, description="allow torchvision datasets to download if absent")
    epochs: int = Field(10, ge=1, description="full passes over the training set")
    batch_size: int = Field(64, ge=1, description="samples per optimizer step")
    lr: float = Field(0.01, gt=0, description="initial learning rate")
    optimizer: Optimizer = Field("sgd", description="sgd | adam | adamw")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty / decoupled weight decay")
    amp: bool | Literal["auto"] = Field(
        "auto", description="mixed precision: auto = on for CUDA, off on CPU"
    )
    amp_dtype: Literal["bf16", "fp16"] = Field(
        "bf16", description="autocast dtype; fp16 adds a GradScaler, bf16 needs none"
    )
    image_size: int | None = Field(
        None, ge=4, description="resize images to this side; default: the dataset's own"
    )
    fraction: float = Field(1.0, gt=0, le=1, description="train on this share of the train set")
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="held-out share for datasets without a validation split"
    )
    num_classes: int | None = Field(None, ge=2, description="classes of the `fake` dataset")
    fake_samples: int = Field(512, ge=8, description="size of the `fake` dataset")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes (file datasets)")
    seed: int = Field(0, description="seed for weights, data order and the train/val split")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"unknown model {value!r}; known: {', '.join(sorted(MODELS))}")
        return value

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in DATASETS:
            raise ValueError(f"unknown dataset {value!r}; known: {', '.join(sorted(DATASETS))}")
        return value

    @model_validator(mode="after")
    def _folder_exists(self) -> TrainConfig:
        if self.dataset == "imagefolder" and not Path(self.data_dir).is_dir():
            raise ValueError(f"data_dir {self.data_dir!r} is not a directory (dataset imagefolder)")
        return self
