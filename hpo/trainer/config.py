"""The training configuration: every knob of the trainer, its default, and its check.

This is the one place where training defaults live. The study spec embeds it as ``train:``
and the search space may tune any of its fields.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hpo.data import DATASETS
from hpo.models import MODELS, model_entry
from hpo.userfn import is_ref

#: Metrics the trainer reports after every epoch; a study's ``metric.name`` must be one of them.
#: ``params_m`` is the model's parameter count in millions (a second objective, minimised).
METRICS = ("val_accuracy", "val_loss", "train_loss", "train_accuracy", "params_m")

#: ``package.module:function``: the user's own model or dataset function.
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

Optimizer = Literal["sgd", "adam", "adamw", "nadam", "radam", "rmsprop", "auto"]


class TrainConfig(BaseModel):
    """What one trial trains: model, data, optimisation, regularisation, augmentation, speed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- model and data -------------------------------------------------------------------
    model: str = Field(
        "cnn", description="a name from hpo.models.MODELS, or your own 'package.module:function'"
    )
    dataset: str = Field(
        "digits", description="a name from hpo.data.DATASETS, or your own 'package.module:function'"
    )
    model_args: dict[str, Any] = Field(
        default_factory=dict, description="fixed keyword arguments of your own model function"
    )
    dataset_args: dict[str, Any] = Field(
        default_factory=dict, description="fixed keyword arguments of your own dataset function"
    )
    head: str | None = Field(
        None, description="the classification head's module name; default: the last nn.Linear"
    )
    data_dir: str = Field("./data", description="where datasets are read from / downloaded to")
    download: bool = Field(
        True, description="allow torchvision datasets and pretrained weights to download if absent"
    )
    flowers102_split: Literal["large_train", "official"] = Field(
        "large_train",
        description="flowers102: large_train = train on test (6149), validate on train+val "
        "(2040); official = train on train (1020), validate on val (1020)",
    )
    image_size: int | None = Field(
        None, ge=4, description="resize images to this side; default: the dataset's own"
    )
    fraction: float = Field(1.0, gt=0, le=1, description="train on this share of the train set")
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="held-out share for datasets without a validation split"
    )
    num_classes: int | None = Field(
        None, ge=2, description="classes of `fake`, or of your dataset (default: inferred)"
    )
    fake_samples: int = Field(512, ge=8, description="size of the `fake` dataset")
    cache: Literal["auto", "none", "ram", "disk", "gpu"] = Field(
        "auto",
        description="decoded images kept in RAM, on disk (data_dir/.hpo-cache), on the training "
        "device (gpu: no DataLoader per batch), or none; auto = device for in-memory sets, none "
        "for file sets",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes (file datasets)")
    seed: int = Field(0, description="seed for weights, data order and augmentation")

    # --- optimisation -----------------------------------------------------------------------
    epochs: int = Field(10, ge=1, description="full passes over the training set")
    batch_size: int | Literal["auto"] = Field(
        64, description="samples per micro-batch; auto (or -1) = largest that fits the device"
    )
    accumulate: int = Field(
        1, ge=1, description="micro-batches per optimizer step (gradient accumulation)"
    )
    lr: float = Field(
        0.01, gt=0, description="initial learning rate (of the head, see layer_decay)"
    )
    optimizer: Optimizer = Field(
        "sgd",
        description="sgd | adam | adamw | nadam | radam | rmsprop | auto (adamw for vit/convnext "
        "or fewer than 10,000 training samples, else sgd)",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD and RMSprop momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (sgd)")
    weight_decay: float = Field(
        0.0, ge=0, description="L2 (sgd...) / decoupled (adamw) decay; never on biases and norms"
    )
    schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="per-step learning-rate schedule from lr down to lr * lrf"
    )
    lrf: float = Field(0.01, ge=0, le=1, description="final LR as a fraction of lr (not constant)")
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear LR warm-up from ~0 to lr over this many epochs"
    )
    clip_grad_norm: float | None = Field(
        None, gt=0, description="clip the global gradient norm to this value"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    dropout: float | None = Field(
        None, ge=0, lt=1, description="dropout before the head; default: the model's own"
    )
    patience: int | None = Field(
        None, ge=1, description="stop after this many epochs without improvement (early stopping)"
    )
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as improvement")

    # --- augmentation (train split only) ----------------------------------------------------
    scale: float = Field(0.0, ge=0, lt=1, description="random zoom: 0.5 = 0.5x to 1.5x")
    fliplr: float = Field(0.0, ge=0, le=1, description="probability of a horizontal flip")
    degrees: float = Field(0.0, ge=0, le=180, description="random rotation in +- degrees")
    shear: float = Field(0.0, ge=0, lt=90, description="random shear in +- degrees")
    color_jitter: float = Field(
        0.0, ge=0, lt=1, description="brightness, contrast, saturation jitter: 0.4 = x0.6-1.4"
    )
    hue: float = Field(0.0, ge=0, le=0.5, description="random hue shift in +- turns")
    random_resized_crop: float = Field(
        0.0, ge=0, lt=1, description="crop a random share >= this of the area, resize back; 0 off"
    )

    # --- transfer learning ------------------------------------------------------------------
    pretrained: bool | str = Field(
        False, description="true = torchvision weights (hub cache); or a path to a state dict"
    )
    freeze_epochs: int = Field(
        0, ge=0, description="train only the new head this many epochs, then unfreeze"
    )
    finetune_lr: float | None = Field(
        None, gt=0, description="head LR after unfreezing (default: lr)"
    )
    layer_decay: float = Field(
        1.0, gt=0, le=1, description="LR multiplier towards the input: 0.33 = /3 per stage"
    )
    layer_decay_mode: Literal["geometric", "linear"] = Field(
        "geometric", description="geometric: lr * decay^depth; linear: down to lr * decay"
    )

    # --- precision and speed ----------------------------------------------------------------
    amp: bool | Literal["auto"] = Field(
        "auto", description="mixed precision: auto = on for CUDA, off on CPU"
    )
    amp_dtype: Literal["bf16", "fp16"] = Field(
        "bf16", description="autocast dtype; fp16 adds a GradScaler, bf16 needs none"
    )
    channels_last: bool | Literal["auto"] = Field(
        "auto", description="NHWC memory format; auto = on for conv nets on CUDA"
    )
    cudnn_benchmark: bool = Field(True, description="let cuDNN pick the fastest kernels (CUDA)")
    compile: bool = Field(False, description="torch.compile the model")
    deterministic: bool = Field(
        False, description="deterministic algorithms: reproducible, slower (CUDA: a few ops warn)"
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        return _known("model", value, MODELS)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        return _known("dataset", value, DATASETS)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: object) -> object:
        if value == -1:
            return "auto"
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError(f"should be greater than or equal to 1, or -1 / auto (got {value})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.dataset == "imagefolder" and not Path(self.data_dir).is_dir():
            raise ValueError(f"data_dir {self.data_dir!r} is not a directory (dataset imagefolder)")
        if self.pretrained is True and not model_entry(self.model).has_weights:
            raise ValueError(
                f"model {self.model} has no published weights; give pretrained: <path>"
            )
        for key in ("model", "dataset"):
            if getattr(self, f"{key}_args") and not is_ref(getattr(self, key)):
                raise ValueError(f"{key}_args: for your own {key} (module:function) only")
        return self


def _known(kind: str, value: str, registry: Any) -> str:
    """A registry name, or a well-formed ``module:function`` (imported by the spec's check)."""
    if is_ref(value):
        if not _REF.match(value):
            raise ValueError(f"{value!r} is not of the form 'package.module:function'")
        return value
    if value not in registry:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {value!r}; known: {known}, or 'package.module:function'")
    return value
