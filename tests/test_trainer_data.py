"""Data knobs: caching (decode counts), augmentation (train only, per sample), Flowers102 splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import TINY_TRAIN

from hpo.data import DataOptions, load_data
from hpo.data.augment import Augment
from hpo.data.batch_augment import BatchTransform
from hpo.data.cache import forget
from hpo.trainer import TrainConfig, fit
from hpo.trainer import setup as trainer_setup

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig.model_validate({**TINY_TRAIN, **overrides})


def _image_folder(root: Path, per_class: int = 6) -> Path:
    from PIL import Image

    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            colour = (i * 40, 0, 0) if cls == "cat" else (0, 0, i * 40)
            Image.new("RGB", (12, 12), colour).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every image decode (PIL.Image.open) while the test runs."""
    from PIL import Image

    seen: list[str] = []
    real_open = Image.open

    def counting_open(fp: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(getattr(fp, "name", fp)))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    forget()
    yield seen
    forget()


def _folder_config(root: Path, **overrides: object) -> TrainConfig:
    return _config(
        dataset="imagefolder", data_dir=str(root), image_size=8, epochs=2, batch_size=4, **overrides
    )


def test_uncached_file_dataset_decodes_every_epoch(tmp_path: Path, decodes: list[str]) -> None:
    fit(_folder_config(_image_folder(tmp_path), cache="none"), CPU, lambda e, m: None)
    assert len(decodes) == 2 * 12  # two epochs of 10 train + 2 validation images


@pytest.mark.parametrize("cache", ["ram", "gpu"])  # gpu on a CPU run: held on the device
def test_cached_dataset_is_not_decoded_again_in_epoch_2(
    tmp_path: Path, decodes: list[str], cache: str
) -> None:
    per_epoch: list[int] = []
    config = _folder_config(_image_folder(tmp_path), cache=cache)
    result = fit(config, CPU, lambda e, m: per_epoch.append(len(decodes)))
    assert per_epoch == [12, 12]  # decoded once, before epoch 1
    assert result.train_samples == 10


def test_disk_cache_is_reused_by_a_later_run(tmp_path: Path, decodes: list[str]) -> None:
    config = _folder_config(_image_folder(tmp_path / "imgs"), cache="disk")
    fit(config, CPU, lambda e, m: None)
    assert len(decodes) == 12
    assert len(list((tmp_path / "imgs" / ".hpo-cache").glob("*.pt"))) == 2
    forget()  # a new process: nothing in memory
    fit(config, CPU, lambda e, m: None)
    assert len(decodes) == 12  # read from disk, not decoded


def test_fraction_changes_the_cached_sample_count(tmp_path: Path, decodes: list[str]) -> None:
    config = _folder_config(_image_folder(tmp_path, per_class=10), cache="ram", fraction=0.5)
    assert fit(config, CPU, lambda e, m: None).train_samples == 8  # half of 16


def test_no_augmentation_on_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heavy augmentation: the model sees the raw validation tensors, and altered train ones."""
    seen: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    real_build = trainer_setup.build_model

    def build(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen[m.training].append(inp[0].clone()))
        return model

    monkeypatch.setattr(trainer_setup, "build_model", build)
    aug = {"fliplr": 1.0, "degrees": 30, "scale": 0.5, "shear": 10, "color_jitter": 0.4}
    fit(_config(epochs=1, fraction=0.2, **aug), CPU, lambda e, m: None)
    data = load_data("digits", DataOptions())
    raw_val = data.val.tensors[0]  # type: ignore[attr-defined]
    assert torch.equal(torch.cat(seen[False]), raw_val)
    train_seen = torch.cat(seen[True])
    assert not any(torch.equal(train_seen[0], x) for x in data.train.tensors[0])  # type: ignore[attr-defined]


def test_batch_transform_is_per_sample_and_train_only() -> None:
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(16, 3, 1, 1)
    flip = BatchTransform(Augment(fliplr=1.0), None, None, CPU)
    assert torch.equal(flip(x, train=True), x.flip(-1))
    assert torch.equal(flip(x, train=False), x)
    heavy = BatchTransform(
        Augment(scale=0.5, degrees=45, shear=10, hue=0.2, color_jitter=0.3), None, None, CPU
    )
    heavy.reseed(3)
    out = heavy(x, train=True)
    assert out.shape == x.shape
    assert len({tuple(o.flatten()[:32].tolist()) for o in out}) == 16  # each sample its own draw
    heavy.reseed(3)
    assert torch.equal(heavy(x, train=True), out)  # reproducible from the seed


def test_random_resized_crop_on_device_and_uint8_normalisation() -> None:
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    transform = BatchTransform(Augment(random_resized_crop=0.3), (0.5,) * 3, (0.25,) * 3, CPU)
    val = transform(x, train=False)
    assert torch.allclose(val, (x.float() / 255 - 0.5) / 0.25)
    assert not torch.allclose(transform(x, train=True), val)


def test_file_pipeline_augments_train_split_only(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
        img = Image.new("RGB", (8, 8))
        img.putpixel((0, 0), (255, 255, 255))  # asymmetric: a flip moves it
        img.save(tmp_path / split / "a" / "0.png")
    opts = DataOptions(data_dir=str(tmp_path), image_size=8, augment=Augment(fliplr=1.0))
    data = load_data("imagefolder", opts)
    train_x, val_x = data.train[0][0], data.val[0][0]
    assert torch.equal(train_x, val_x.flip(-1))
    assert torch.equal(data.val[0][0], val_x)  # validation: the same every time


def test_flowers102_split_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    sizes = {"train": 1020, "val": 1020, "test": 6149}

    class FakeFlowers(torch.utils.data.Dataset):
        def __init__(self, root: str, split: str, transform: Any, download: bool) -> None:
            self.n = sizes[split]

        def __len__(self) -> int:
            return self.n

    monkeypatch.setattr(torchvision.datasets, "Flowers102", FakeFlowers)
    recipe = load_data("flowers102", DataOptions())
    assert (len(recipe.train), len(recipe.val)) == (6149, 2040)  # type: ignore[arg-type]
    assert recipe.num_classes == 102 and recipe.image_size == 224
    official = load_data("flowers102", DataOptions(flowers102_split="official"))
    assert (len(official.train), len(official.val)) == (1020, 1020)  # type: ignore[arg-type]


def test_flowers102_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Flowers102.*download: false"):
        load_data("flowers102", DataOptions(data_dir=str(tmp_path), download=False))


def test_digits_read_from_sklearns_file_match_load_digits() -> None:
    """Contract with scikit-learn's private layout (hpo/data/_sklearn.py): the bundled CSV is
    where hpo reads it, and gives exactly the arrays the public ``load_digits`` gives."""
    import numpy as np

    from hpo.data._sklearn import bundled_digits_file, load_digits_arrays

    assert bundled_digits_file() is not None, "sklearn moved digits.csv.gz: update _sklearn.py"
    images, target = load_digits_arrays(public=False)
    public_images, public_target = load_digits_arrays(public=True)
    assert images.shape == (1797, 8, 8) and images.dtype == public_images.dtype
    np.testing.assert_array_equal(images, public_images)
    np.testing.assert_array_equal(target, public_target)
    assert target.dtype == public_target.dtype


def test_digits_load_without_importing_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # importing it now raises
    bundle = load_data("digits", DataOptions())
    assert len(bundle.train) + len(bundle.val) == 1797
