"""The trainer on CPU with tiny data: metrics per epoch, precision, failures, registries."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_TRAIN

from hpo.data import DATASETS, DataOptions, load_data
from hpo.errors import Interrupted, NonFiniteLossError
from hpo.models import MODELS, build_model
from hpo.trainer import TrainConfig, fit
from hpo.trainer.precision import resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig.model_validate({**TINY_TRAIN, **overrides})


def test_fit_reports_every_epoch_and_learns() -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    result = fit(_config(epochs=3, lr=0.1), CPU, lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [1, 2, 3]
    for _, metrics in seen:
        assert {"val_accuracy", "val_loss", "train_loss", "samples_per_second"} <= set(metrics)
    assert seen[-1][1]["val_accuracy"] > 0.5  # chance is 0.1
    assert result.epochs_run == 3 and result.samples_per_second > 0


def test_on_epoch_exception_stops_training() -> None:
    class Stop(Exception):
        pass

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(_config(epochs=5), CPU, on_epoch)


def test_non_finite_loss_raises_with_reason() -> None:
    with pytest.raises(NonFiniteLossError) as info:
        fit(_config(lr=1e30, optimizer="sgd", momentum=0.0), CPU, lambda e, m: None)
    assert info.value.reason == "non_finite_loss"


def test_should_stop_interrupts_within_a_batch() -> None:
    calls = iter(range(1000))
    with pytest.raises(Interrupted):
        fit(_config(epochs=5), CPU, lambda e, m: None, should_stop=lambda: next(calls) >= 3)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_path_runs_on_cpu(dtype: str) -> None:
    config = _config(amp=True, amp_dtype=dtype, epochs=1)
    precision = resolve_precision(config, CPU)
    assert precision.enabled
    assert precision.scaler(CPU).is_enabled() == (dtype == "fp16")
    result = fit(config, CPU, lambda e, m: None)
    assert result.epochs_run == 1


def test_amp_auto_is_off_on_cpu() -> None:
    assert not resolve_precision(_config(), CPU).enabled


def test_fraction_trains_on_a_subset() -> None:
    full = fit(_config(epochs=1), CPU, lambda e, m: None)
    tenth = fit(_config(epochs=1, fraction=0.1), CPU, lambda e, m: None)
    assert tenth.train_samples == int(full.train_samples * 0.1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_for_small_grey_images(name: str) -> None:
    size = max(8, MODELS[name].min_size)
    model = build_model(name, num_classes=7, in_channels=1, image_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_small_images_are_upscaled_for_models_that_need_more() -> None:
    seen = []
    fit(
        _config(model="mobilenet_v3_small", epochs=1, fraction=0.05),
        CPU,
        lambda e, m: seen.append(m),
    )
    assert len(seen) == 1


def test_datasets_offline() -> None:
    digits = load_data("digits", DataOptions())
    assert digits.num_classes == 10 and digits.in_channels == 1 and digits.in_memory
    assert len(digits.train) + len(digits.val) == 1797  # type: ignore[arg-type]
    fake = load_data("fake", DataOptions(samples=40, image_size=16, num_classes=3))
    assert fake.image_size == 16 and fake.num_classes == 3
    assert {"mnist", "fashion_mnist", "cifar10", "flowers102", "imagefolder"} <= set(DATASETS)


def test_imagefolder_from_tmp_path(tmp_path) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(6):
            Image.new("RGB", (12, 12), (i * 40, 0, 0) if cls == "cat" else (0, 0, i * 40)).save(
                tmp_path / cls / f"{i}.png"
            )
    config = _config(
        dataset="imagefolder", data_dir=str(tmp_path), image_size=16, epochs=1, batch_size=4
    )
    result = fit(config, CPU, lambda e, m: None)
    assert result.train_samples == 10  # 12 images, 20% held out


def test_missing_download_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="download: false"):
        load_data("cifar10", DataOptions(data_dir=str(tmp_path), download=False))
