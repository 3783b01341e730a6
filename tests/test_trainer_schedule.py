"""The schedule alone sets the learning rate: every optimizer step, in every group, runs at
``peak * factor(step) * lr_scale`` of its phase, across the fine-tuning switch and resume."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_TRAIN

from hpo.models import build_model
from hpo.trainer import TrainConfig, fit
from hpo.trainer import step as trainer_step
from hpo.trainer.optim import build_optimizer, param_groups
from hpo.trainer.schedule import Schedule
from hpo.trainer.transfer import phase_of

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig.model_validate({**TINY_TRAIN, **overrides})


def _expected_lr(config: TrainConfig, steps_per_epoch: int, step: int) -> float:
    """The head's LR at optimizer step ``step`` (0-based, over the whole run), from the config."""
    phase = phase_of(config, step // steps_per_epoch + 1)
    schedule = Schedule(
        config.schedule,
        phase.peak_lr,
        config.lrf,
        phase.epochs * steps_per_epoch,
        round(config.warmup_epochs * steps_per_epoch),
    )
    return phase.peak_lr * schedule.factor(step - (phase.first_epoch - 1) * steps_per_epoch)


def _record_lrs(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[float, float]]]:
    """Per optimizer step: each group's (lr, lr_scale) as the step runs."""
    seen: list[list[tuple[float, float]]] = []
    real_step = trainer_step._optimizer_step

    def spy(step: trainer_step.TrainStep) -> None:
        seen.append([(g["lr"], g["lr_scale"]) for g in step.optimizer.param_groups])
        real_step(step)

    monkeypatch.setattr(trainer_step, "_optimizer_step", spy)
    return seen


def test_every_step_runs_at_the_schedules_lr_across_phases_and_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(7)
    weights = tmp_path / "cnn.pth"
    torch.save(build_model("cnn", 10, 1, 8).state_dict(), weights)
    config = _config(
        pretrained=str(weights),
        freeze_epochs=1,
        epochs=3,
        fraction=0.2,
        batch_size=16,
        lr=0.1,
        finetune_lr=0.02,
        layer_decay=0.5,
        warmup_epochs=0.5,  # each phase warms up again
        optimizer="adamw",
    )
    seen = _record_lrs(monkeypatch)
    states: dict[int, dict[str, Any]] = {}
    fit(config, CPU, lambda e, m: None, on_checkpoint=lambda e, s: states.update({e: s}))
    per_epoch = len(seen) // config.epochs
    assert per_epoch > 2 and len(seen) == per_epoch * config.epochs
    assert len({scale for step in seen for _, scale in step}) == 3  # stem, conv 2, head
    for i, groups in enumerate(seen):
        head = _expected_lr(config, per_epoch, i)
        assert [lr for lr, _ in groups] == pytest.approx([head * s for _, s in groups]), i

    # Resumed after the switch to fine-tuning: the checkpoint's optimizer state holds LRs too,
    # and the schedule must still decide them.
    seen.clear()
    fit(config, CPU, lambda e, m: None, resume=states[2])
    assert len(seen) == per_epoch
    for i, groups in enumerate(seen, start=2 * per_epoch):
        head = _expected_lr(config, per_epoch, i)
        assert [lr for lr, _ in groups] == pytest.approx([head * s for _, s in groups]), i


def test_param_groups_carry_a_scale_and_no_lr() -> None:
    """The groups hold only ``lr_scale``; the optimizer's LR is a placeholder until a schedule
    applies (so a forgotten schedule trains nothing rather than at a stale LR)."""
    config = _config(model="resnet18", lr=0.09, layer_decay=1 / 3)
    groups = param_groups(build_model("resnet18", 10, 1, 8), config)
    assert all("lr" not in g for g in groups)
    optimizer = build_optimizer(config, groups)
    assert {g["lr"] for g in optimizer.param_groups} == {0.0}
    Schedule("constant", 0.09, 1.0, 1).apply(optimizer)
    assert all(math.isclose(g["lr"], 0.09 * g["lr_scale"]) for g in optimizer.param_groups)
