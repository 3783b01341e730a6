"""Everything one run builds before its first epoch, and the phase switch between epochs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from hpo.models import build_model, head_name
from hpo.trainer import autobatch
from hpo.trainer.batches import Batches
from hpo.trainer.config import METRICS, TrainConfig
from hpo.trainer.distributed import Group, wrap
from hpo.trainer.inputs import Inputs, load_inputs, make_batches
from hpo.trainer.optim import build_optimizer, param_groups, resolve_optimizer
from hpo.trainer.precision import Precision, resolve_precision
from hpo.trainer.runtime import channels_last, configure, maybe_compile
from hpo.trainer.schedule import Schedule
from hpo.trainer.step import TrainStep
from hpo.trainer.stopping import EarlyStopping
from hpo.trainer.transfer import FROZEN, Phase, phase_of, set_backbone_trainable


@dataclass
class Run:
    """One run's model, data, optimizer and state between epochs."""

    config: TrainConfig
    device: torch.device
    model: nn.Module  # the module that owns the weights (uncompiled)
    head: str
    train: Batches
    val: Batches
    optimizer: torch.optim.Optimizer
    optimizer_name: str
    precision: Precision
    step: TrainStep
    stopper: EarlyStopping
    batch_size: int
    phase: Phase
    group: Group | None = None  # data-parallel: this process's rank in the trial's group

    @property
    def schedule(self) -> Schedule:
        return self.step.schedule

    def enter_epoch(self, epoch: int) -> None:
        """Switch phase (freeze / unfreeze, new schedule) when ``epoch`` starts a new one."""
        phase = phase_of(self.config, epoch)
        if phase == self.phase:
            return
        self.phase = phase
        self.step.frozen_head = _freeze_for(phase, self.model, self.head)
        self.step.schedule = _schedule(self.config, phase, self.train, self.optimizer)


def _freeze_for(phase: Phase, model: nn.Module, head: str) -> str | None:
    """Freeze the backbone for feature extraction (unfreeze it otherwise); the frozen head."""
    frozen = phase.index == FROZEN
    set_backbone_trainable(model, head, not frozen)
    return head if frozen else None


def _schedule(
    config: TrainConfig, phase: Phase, train: Batches, optimizer: torch.optim.Optimizer
) -> Schedule:
    """``phase``'s schedule, applied: the optimizer's LRs are its first step's from here on."""
    steps_per_epoch = math.ceil(train.num_batches / config.accumulate)
    schedule = Schedule(
        kind=config.schedule,
        peak=phase.peak_lr,
        lrf=config.lrf,
        total=phase.epochs * steps_per_epoch,
        warmup=round(config.warmup_epochs * steps_per_epoch),
    )
    schedule.apply(optimizer)
    return schedule


def _build_model(config: TrainConfig, inputs: Inputs, device: torch.device) -> nn.Module:
    data = inputs.data
    model = build_model(
        config.model,
        data.num_classes,
        data.in_channels,
        data.image_size,
        pretrained=config.pretrained,
        download=config.download,
        dropout=config.dropout,
        head=config.head,
        args=config.model_args,
        options=config.model_dump(exclude={"model_args", "dataset_args"}),
    )
    fmt = torch.channels_last if channels_last(config, device) else torch.contiguous_format
    return model.to(device).to(memory_format=fmt)


def _head(model: nn.Module, config: TrainConfig) -> str:
    """The head's name; "" (none) for a model without a linear head when nothing needs one
    (a user's model may end in a convolution)."""
    try:
        return head_name(model, config.head)
    except ValueError:
        if config.head is not None or config.freeze_epochs or config.layer_decay < 1:
            raise
        return ""


def _batch_size(
    config: TrainConfig,
    model: nn.Module,
    inputs: Inputs,
    precision: Precision,
    optimizer_name: str,
    device: torch.device,
    group: Group | None = None,
) -> int:
    if config.batch_size != "auto":
        return config.batch_size
    if group is not None:  # the global batch: what the tightest rank fits, on every rank
        per_rank = _batch_size(config, model, inputs, precision, optimizer_name, device)
        return group.agree_min(per_rank, device) * group.world
    key = (
        config.model,
        inputs.sample_shape,
        inputs.data.num_classes,
        precision,
        optimizer_name,
        channels_last(config, device),
        config.compile,
    )
    probe = autobatch.probe_for(model, config, optimizer_name, inputs, precision, device)
    return autobatch.resolve_batch_size(key, device, len(inputs.train), probe)  # type: ignore[arg-type]


def prepare(
    config: TrainConfig,
    device: torch.device,
    monitor: tuple[str, str] | None,
    batch_size: int | None = None,
    group: Group | None = None,
) -> Run:
    """Seed, load data, build the model and the optimizer; ``batch_size`` overrides auto;
    ``group``: train data-parallel as one rank of it (see :mod:`hpo.trainer.distributed`)."""
    configure(config, device)
    inputs = load_inputs(config, device)
    model = _build_model(config, inputs, device)
    if group is not None:  # the same initial weights everywhere; dropout draws of each rank's
        torch.manual_seed(config.seed + 7_919 * group.rank)
    precision = resolve_precision(config, device)
    optimizer_name = resolve_optimizer(config, len(inputs.train))  # type: ignore[arg-type]
    batch_size = batch_size or _batch_size(
        config, model, inputs, precision, optimizer_name, device, group
    )
    fmt = torch.channels_last if channels_last(config, device) else torch.contiguous_format
    train, val = make_batches(inputs, config, batch_size, device, fmt)
    train.group = val.group = group
    optimizer = build_optimizer(config, param_groups(model, config), optimizer_name)
    metric, direction = monitor or ("val_loss", "minimize")
    if metric not in METRICS or direction not in ("maximize", "minimize"):
        raise ValueError(f"cannot monitor {monitor!r}: metric one of {METRICS}, then a direction")
    phase, head = phase_of(config, 1), _head(model, config)
    step = TrainStep(
        model=maybe_compile(model if group is None else wrap(model, device), config),
        optimizer=optimizer,
        scaler=precision.scaler(device),
        precision=precision,
        device=device,
        schedule=_schedule(config, phase, train, optimizer),  # the LR's only writer
        frozen_head=_freeze_for(phase, model, head),
        accumulate=config.accumulate,
        clip_grad_norm=config.clip_grad_norm,
        label_smoothing=config.label_smoothing,
        module=model,
        group=group,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return Run(
        config=config,
        device=device,
        model=model,
        head=head,
        train=train,
        val=val,
        optimizer=optimizer,
        optimizer_name=optimizer_name,
        precision=precision,
        step=step,
        stopper=EarlyStopping(metric, direction, config.patience, config.min_delta),
        batch_size=batch_size,
        phase=phase,
        group=group,
    )
