"""Optimisation knobs: optimizers, layer-decayed parameter groups, schedules, accumulation,
clipping, label smoothing. Each test checks that the knob changes what it claims."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY_TRAIN
from torch import nn

from hpo.data.batch_augment import BatchTransform
from hpo.models import build_model
from hpo.trainer import TrainConfig, fit
from hpo.trainer.batches import TensorBatches
from hpo.trainer.optim import build_optimizer, param_groups, resolve_optimizer, stage_scales
from hpo.trainer.precision import Precision
from hpo.trainer.schedule import Schedule
from hpo.trainer.step import TrainStep, train_one_epoch

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig.model_validate({**TINY_TRAIN, **overrides})


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("sgd", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("nadam", torch.optim.NAdam),
        ("radam", torch.optim.RAdam),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_each_optimizer_name_builds_its_class(name: str, cls: type) -> None:
    config = _config(optimizer=name, weight_decay=1e-4)
    model = build_model("cnn", 10, 1, 8)
    optimizer = build_optimizer(config, param_groups(model, config))
    assert type(optimizer) is cls


def test_sgd_momentum_and_nesterov() -> None:
    config = _config(optimizer="sgd", momentum=0.8, nesterov=True)
    optimizer = build_optimizer(config, param_groups(build_model("cnn", 10, 1, 8), config))
    assert optimizer.defaults["momentum"] == 0.8 and optimizer.defaults["nesterov"]


def test_auto_optimizer_rule() -> None:
    assert resolve_optimizer(_config(optimizer="auto"), 1_000) == "adamw"  # small data
    assert resolve_optimizer(_config(optimizer="auto", model="resnet18"), 50_000) == "sgd"
    assert resolve_optimizer(_config(optimizer="auto", model="vit_b_16"), 50_000) == "adamw"
    assert resolve_optimizer(_config(optimizer="adam"), 50) == "adam"


def test_weight_decay_skips_biases_and_norms() -> None:
    config = _config(weight_decay=0.05)
    groups = param_groups(build_model("cnn", 10, 1, 8), config)
    for group in groups:
        dims = {p.ndim for p in group["params"]}
        assert group["weight_decay"] == (0.05 if dims != {1} else 0.0)


def test_layer_decay_gives_each_resnet_stage_a_third_of_the_next() -> None:
    config = _config(model="resnet18", lr=0.09, layer_decay=1 / 3)
    model = build_model("resnet18", 10, 1, 8)
    optimizer = build_optimizer(config, param_groups(model, config))
    Schedule("constant", config.lr, 1.0, 1).apply(optimizer)  # the LR's only writer
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    expect = {"fc": 0.09, "layer4": 0.03, "layer3": 0.01, "layer2": 0.09 / 27}
    expect |= {"layer1": 0.09 / 81, "conv1": 0.09 / 243}
    for prefix, lr in expect.items():
        params = [p for n, p in named.items() if n.startswith(prefix + ".")]
        assert params and all(math.isclose(lr_of[id(p)], lr) for p in params), prefix


def test_linear_layer_decay_reaches_decay_at_the_input() -> None:
    assert stage_scales(5, 0.2, "linear") == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert stage_scales(3, 0.5, "geometric") == pytest.approx([0.25, 0.5, 1.0])


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_ends_at_lr_times_lrf(kind: str) -> None:
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [param], "lr_scale": 0.5}], lr=0.2)
    schedule = Schedule(kind, peak=0.2, lrf=0.05, total=20, warmup=4)
    schedule.apply(optimizer)
    used = []
    for _ in range(20):
        used.append(optimizer.param_groups[0]["lr"])  # the LR this optimizer step runs with
        optimizer.step()
        schedule.advance(optimizer)
    assert used[0] == pytest.approx(0.2 * 0.5 / 5)  # warm-up starts at 1/(warmup+1)
    assert used[4] == pytest.approx(0.2 * 0.5)  # the peak right after warm-up
    assert used[-1] == pytest.approx(0.2 * 0.05 * 0.5)  # lr * lrf (times the stage scale)
    assert all(a >= b for a, b in zip(used[4:], used[5:], strict=False))  # falls monotonically


def test_fit_last_step_lr_is_lr_times_lrf() -> None:
    seen: list[dict[str, float]] = []
    fit(_config(epochs=2, lr=0.1, lrf=0.05, fraction=0.2), CPU, lambda e, m: seen.append(m))
    assert seen[-1]["lr"] == pytest.approx(0.1 * 0.05)
    constant: list[dict[str, float]] = []
    fit(_config(epochs=2, schedule="constant", fraction=0.2), CPU, lambda e, m: constant.append(m))
    assert constant[-1]["lr"] == pytest.approx(0.01)


def _linear_step(batch_size: int, accumulate: int, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """One epoch of a BN-free linear model over (x, y) with plain SGD (no shuffle)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    precision = Precision(False, torch.float32)
    step = TrainStep(
        model,
        optimizer,
        precision.scaler(CPU),
        precision,
        CPU,
        Schedule("constant", 0.5, 1.0, 100),
        accumulate=accumulate,
    )
    transform = BatchTransform(None, None, None, CPU)
    train_one_epoch(step, TensorBatches(x, y, batch_size, False, CPU, transform))
    return model


@pytest.mark.parametrize("samples", [32, 30])  # 30: the last micro-batch is short
def test_accumulated_micro_batches_equal_one_big_batch(samples: int) -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = (
        torch.randn(samples, 1, 4, 4, generator=gen),
        torch.randint(0, 3, (samples,), generator=gen),
    )
    big = _linear_step(samples, 1, x, y)  # one optimizer step on all samples
    micro = _linear_step(8, 4, x, y)  # four micro-batches, one optimizer step
    single = _linear_step(8, 1, x, y)  # four optimizer steps: must differ
    for a, b, c in zip(big.parameters(), micro.parameters(), single.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
        assert not torch.allclose(a, c, atol=1e-4)


def test_clip_grad_norm_bounds_the_update() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    precision = Precision(False, torch.float32)
    schedule = Schedule("constant", 1.0, 1.0, 10)
    step = TrainStep(model, optimizer, precision.scaler(CPU), precision, CPU, schedule)
    step.clip_grad_norm = 1e-3
    x, y = torch.randn(8, 1, 4, 4) * 100, torch.randint(0, 3, (8,))
    train_one_epoch(step, TensorBatches(x, y, 8, False, CPU, BatchTransform(None, None, None, CPU)))
    params = [p.detach() for p in model.parameters()]
    moved = torch.cat([(p - b).flatten() for p, b in zip(params, before, strict=True)])
    assert moved.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_label_smoothing_changes_the_training_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    expected = nn.functional.cross_entropy(model(x), y, label_smoothing=0.3).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    precision = Precision(False, torch.float32)
    schedule = Schedule("constant", 0.0, 1.0, 10)
    step = TrainStep(model, optimizer, precision.scaler(CPU), precision, CPU, schedule)
    step.label_smoothing = 0.3
    batches = TensorBatches(x, y, 8, False, CPU, BatchTransform(None, None, None, CPU))
    assert train_one_epoch(step, batches)["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_dropout_before_the_head() -> None:
    model = build_model("resnet18", 5, 3, 8, dropout=0.4)
    assert isinstance(model.fc, nn.Sequential) and model.fc[0].p == 0.4
    mobile = build_model("mobilenet_v3_small", 5, 3, 32, dropout=0.1)
    assert mobile.classifier[2].p == 0.1  # its own dropout, re-set rather than doubled


def test_batch_size_minus_one_means_auto() -> None:
    assert _config(batch_size=-1).batch_size == "auto"
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        _config(batch_size=0)


def test_same_device_treats_a_bare_device_as_its_index() -> None:
    """A device cache on ``cuda`` holds tensors that report ``cuda:0``: batches must not treat
    them as host tensors (found on the first GPU run: ``cannot pin 'torch.cuda.FloatTensor'``)."""
    from hpo.trainer.runtime import same_device

    assert torch.device("cuda", 0) != torch.device("cuda")  # why plain == is not enough
    assert same_device(torch.device("cpu"), torch.device("cpu", 0))
    assert same_device(torch.device("cuda", 1), torch.device("cuda", 1))
    assert not same_device(torch.device("cuda", 0), torch.device("cuda", 1))
    assert not same_device(torch.device("cpu"), torch.device("cuda", 0))
