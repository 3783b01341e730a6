"""Transfer learning: weights from a file or the hub cache, head swaps, freezing, layer LRs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from conftest import TINY_TRAIN

from hpo.models import _pretrained as pretrained_module
from hpo.models import build_model
from hpo.models._pretrained import hub_file
from hpo.models.parts import head_name, stages
from hpo.trainer import TrainConfig, fit
from hpo.trainer import step as trainer_step

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig.model_validate({**TINY_TRAIN, **overrides})


@pytest.fixture
def hub_dir(tmp_path: Path) -> Iterator[Path]:
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(before)


def test_weights_from_a_file_keep_the_backbone_and_swap_the_head(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None)  # an ImageNet-shaped model, 1000 classes
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", 5, 3, 64, pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 5
    grey = build_model("resnet18", 5, 1, 64, pretrained=str(tmp_path / "r18.pth"))
    assert torch.allclose(grey.conv1.weight, source.conv1.weight.sum(1, keepdim=True))


def test_hub_cache_weights_load_offline(hub_dir: Path) -> None:
    path, _ = hub_file("mobilenet_v3_small")
    path.parent.mkdir(parents=True)
    source = torchvision.models.mobilenet_v3_small(weights=None)
    torch.save(source.state_dict(), path)
    model = build_model("mobilenet_v3_small", 4, 3, 32, pretrained=True, download=False)
    assert torch.equal(model.features[3].block[0][0].weight, source.features[3].block[0][0].weight)
    assert model.classifier[3].out_features == 4


def test_missing_weights_offline_name_the_expected_file(hub_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"hub/checkpoints/resnet18-.*\.pth"):
        build_model("resnet18", 5, 3, 32, pretrained=True, download=False)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_model("resnet18", 5, 3, 32, pretrained="/nowhere.pth")


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "m.pth")
    with pytest.raises(ValueError, match="do not fit"):
        build_model("resnet18", 5, 3, 32, pretrained=str(tmp_path / "m.pth"))


def test_no_published_weights_for_the_small_cnn() -> None:
    with pytest.raises(ValueError, match="no published weights"):
        _config(pretrained=True)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("resnet18", 64),
        ("vgg11_bn", 32),
        ("mobilenet_v3_small", 32),
        ("efficientnet_b0", 32),
        ("convnext_tiny", 32),
        ("vit_b_16", 32),
    ],
)
def test_head_swap_for_every_family(monkeypatch: pytest.MonkeyPatch, name: str, size: int) -> None:
    source = getattr(torchvision.models, name)(weights=None).state_dict()  # 1000 classes
    monkeypatch.setattr(pretrained_module, "_hub_state", lambda *a: dict(source))
    model = build_model(name, 7, 3, size, pretrained=True).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)
    head = head_name(model)
    own = model.state_dict()
    backbone = [k for k in own if not k.startswith(head + ".") and own[k].shape == source[k].shape]
    assert len(backbone) >= len(own) - 4  # all but the head (and a resized stem/embedding)
    assert all(torch.equal(own[k], source[k]) for k in backbone if "pos_embedding" not in k)
    assert len(stages(model)) >= 4  # stem, blocks..., head: something for layer decay to act on


def _pretrained_cnn(tmp_path: Path) -> str:
    torch.manual_seed(7)
    path = tmp_path / "cnn.pth"
    torch.save(build_model("cnn", 10, 1, 8).state_dict(), path)
    return str(path)


def test_frozen_backbone_gets_no_gradient_until_unfrozen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graded: list[set[str]] = []
    real_step = trainer_step._optimizer_step

    def spy(step: trainer_step.TrainStep) -> None:
        assert step.module is not None
        graded.append({n for n, p in step.module.named_parameters() if p.grad is not None})
        real_step(step)

    monkeypatch.setattr(trainer_step, "_optimizer_step", spy)
    states: list[dict[str, Any]] = []
    config = _config(pretrained=_pretrained_cnn(tmp_path), freeze_epochs=1, epochs=2, fraction=0.1)
    fit(config, CPU, lambda e, m: None, on_checkpoint=lambda e, s: states.append(s))
    per_epoch = len(graded) // 2
    assert all(g == {"fc.weight", "fc.bias"} for g in graded[:per_epoch])  # phase 1: head only
    assert all(len(g) == 8 for g in graded[per_epoch:])  # phase 2: every parameter
    loaded = torch.load(config.pretrained, weights_only=True)
    after_phase_1 = states[0]["model"]
    for key, value in loaded.items():  # the backbone (BN statistics too) did not move
        if not key.startswith("fc."):
            assert torch.equal(after_phase_1[key], value), key
    assert not torch.equal(after_phase_1["fc.weight"], loaded["fc.weight"])


def test_fine_tuning_phase_uses_layer_decayed_lrs(tmp_path: Path) -> None:
    states: list[dict[str, Any]] = []
    config = _config(
        pretrained=_pretrained_cnn(tmp_path),
        freeze_epochs=1,
        epochs=2,
        fraction=0.1,
        lr=0.1,
        finetune_lr=0.01,
        layer_decay=0.5,
        schedule="constant",
    )
    fit(config, CPU, lambda e, m: None, on_checkpoint=lambda e, s: states.append(s))
    lrs = lambda state: sorted({g["lr"] for g in state["optimizer"]["param_groups"]})  # noqa: E731
    assert max(lrs(states[0])) == pytest.approx(0.1)  # phase 1: the head at lr
    assert lrs(states[1]) == pytest.approx([0.0025, 0.005, 0.01])  # stem, conv 2, head


def test_flowers102_recipe_runs_on_tiny_fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped study's train block end to end, shrunk: fake images, fake hub weights."""
    import torchvision.datasets
    import yaml
    from PIL import Image

    class FakeFlowers(torch.utils.data.Dataset):
        def __init__(self, root: str, split: str, transform: Any, download: bool) -> None:
            self.n, self.transform = {"train": 3, "val": 3, "test": 8}[split], transform

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> tuple[Any, int]:
            return self.transform(Image.new("RGB", (40, 30), (i * 30, 90, 0))), i % 102

    source = torchvision.models.resnet50(weights=None).state_dict()
    monkeypatch.setattr(torchvision.datasets, "Flowers102", FakeFlowers)
    monkeypatch.setattr(pretrained_module, "_hub_state", lambda *a: dict(source))
    study_file = Path(__file__).parent.parent / "studies" / "flowers102_finetune.yaml"
    recipe = yaml.safe_load(study_file.read_text())["train"]
    small = {"image_size": 32, "epochs": 2, "freeze_epochs": 1, "batch_size": 4, "num_workers": 0}
    config = TrainConfig.model_validate({**recipe, **small, "layer_decay_mode": "geometric"})
    states: list[dict[str, Any]] = []
    result = fit(config, CPU, lambda e, m: None, on_checkpoint=lambda e, s: states.append(s))
    assert result.epochs_run == 2 and result.train_samples == 8
    scales = sorted({g["lr_scale"] for g in states[1]["optimizer"]["param_groups"]})
    assert scales == pytest.approx([0.333**k for k in range(5, -1, -1)])  # stem ... fc
