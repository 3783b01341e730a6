"""The user's own model and dataset (``train.model`` / ``train.dataset: module:function``):
checked at ``hpo validate``, trained by hpo's trainer with its practices, tuned by a worker."""

from __future__ import annotations

import copy
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_spec
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo.cli import app
from hpo.spec import StudySpec, trial_config
from hpo.study import next_trial, prepare
from hpo.trainer import TrainConfig, fit
from hpo.worker import run_trial

runner = CliRunner()

#: A user's module: tensors, a map-style Dataset, features without an image shape, models.
USER_MODULE = """
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

BUILT = []  # (kwargs, model, its initial state) of every model built


def _blobs(n, classes, shape, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, *shape, generator=g) * 2
    return centres[y] + torch.randn(n, *shape, generator=g), y


def tensors(val_fraction, image_size=8):
    x, y = _blobs(200, 4, (1, image_size, image_size), 0)
    n_val = int(len(y) * val_fraction)
    return TensorDataset(x[n_val:], y[n_val:]), TensorDataset(x[:n_val], y[:n_val])


class Plain(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


class Named(Plain):
    classes = ["a", "b", "c", "d", "e"]  # one more than the labels use


def named():
    x, y = _blobs(120, 4, (1, 8, 8), 1)
    return Named(x[:100], y[:100]), Named(x[100:], y[100:])


def plain():
    x, y = _blobs(120, 4, (1, 8, 8), 1)
    return Plain(x[:100], y[:100]), Plain(x[100:], y[100:])


def features(data_dir, seed):
    x, y = _blobs(160, 3, (12,), 2)  # tabular: 12 features, no image shape
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


class Net(nn.Module):
    def __init__(self, inputs, num_classes, width, dropout):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(inputs, width), nn.ReLU())
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, num_classes)
    def forward(self, x):
        return self.out(self.drop(self.body(x)))


def net(num_classes, in_channels, image_size, width=16, dropout=0.0):
    inputs = in_channels * image_size * image_size if image_size else in_channels
    model = Net(inputs, num_classes, width, dropout)
    BUILT.append(({"num_classes": num_classes, "width": width, "dropout": dropout}, model,
                  {k: v.clone() for k, v in model.state_dict().items()}))
    return model


def mlp(num_classes, depth, **rest):  # depth is required: from model_args or the space
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8 * depth), nn.ReLU(),
                         nn.Linear(8 * depth, num_classes))


class OomAbove(nn.Module):
    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit = inner, limit
    def forward(self, x):
        if x.shape[0] > self.limit and self.training:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


def oom16(num_classes, in_channels, image_size, width):
    return OomAbove(net(num_classes, in_channels, image_size, width), 16)


def conv_head(num_classes, in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, num_classes, 3), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def no_classes(width):
    return nn.Linear(width, 2)


def not_a_module(num_classes):
    return "a string"
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The user's module, under a name of its own, importable from ``tmp_path``."""
    name = f"usr_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


def _config(mod: Any, **train: Any) -> TrainConfig:
    base = {"model": f"{mod.__name__}:net", "dataset": f"{mod.__name__}:tensors"}
    return TrainConfig.model_validate({**base, "epochs": 2, "batch_size": 32, **train})


def _fit(config: TrainConfig, **kwargs: Any) -> Any:
    return fit(config, torch.device("cpu"), lambda epoch, metrics: None, **kwargs)


# --- the trainer ----------------------------------------------------------------------------


def test_tensor_data_trains_with_classes_from_its_labels(user_module: Any) -> None:
    result = _fit(_config(user_module, model_args={"width": 24}, lr=0.05))
    kwargs, model, _ = user_module.BUILT[-1]
    assert kwargs == {"num_classes": 4, "width": 24, "dropout": 0.0}
    assert model.out.out_features == 4
    assert result.epochs_run == 2 and result.train_samples == 160
    assert result.history[-1]["val_accuracy"] > 0.5  # four well-separated blobs


def test_a_map_style_dataset_goes_through_a_dataloader_with_its_classes(user_module: Any) -> None:
    mod = user_module.__name__
    result = _fit(_config(user_module, dataset=f"{mod}:named", num_workers=0))
    assert user_module.BUILT[-1][0]["num_classes"] == 5  # .classes, not the largest label
    assert result.train_samples == 100


def test_classes_nothing_tells_is_one_clear_error_and_num_classes_fixes_it(
    user_module: Any,
) -> None:
    config = _config(user_module, dataset=f"{user_module.__name__}:plain", num_workers=0)
    with pytest.raises(ValueError, match=r"number of classes .* set train.num_classes"):
        _fit(config)
    _fit(config.model_copy(update={"num_classes": 6}))
    assert user_module.BUILT[-1][0]["num_classes"] == 6


def test_features_without_an_image_shape_train(user_module: Any) -> None:
    mod = user_module.__name__
    config = _config(user_module, model=f"{mod}:mlp", dataset=f"{mod}:features")
    config = config.model_copy(update={"model_args": {"depth": 2}})
    result = _fit(config)
    assert result.epochs_run == 2 and result.train_samples == 128


def test_a_declared_dropout_is_passed_and_none_is_inserted(user_module: Any) -> None:
    _fit(_config(user_module, dropout=0.3, epochs=1))
    kwargs, model, _ = user_module.BUILT[-1]
    assert kwargs["dropout"] == 0.3
    assert isinstance(model.out, torch.nn.Linear)  # no Dropout wrapped around the head


def test_freeze_epochs_train_only_the_named_head(user_module: Any) -> None:
    states: list[dict[str, Any]] = []
    config = _config(user_module, freeze_epochs=1, epochs=2, head="out", lr=0.05)
    _fit(config, on_checkpoint=lambda epoch, state: states.append(state))
    initial = user_module.BUILT[-1][2]
    after_1, after_2 = states[0]["model"], states[1]["model"]
    assert torch.equal(after_1["body.1.weight"], initial["body.1.weight"])  # frozen
    assert not torch.equal(after_1["out.weight"], initial["out.weight"])  # the head trains
    assert not torch.equal(after_2["body.1.weight"], initial["body.1.weight"])  # unfrozen


def test_layer_decay_needs_a_head_and_a_model_without_one_trains_plainly(
    user_module: Any,
) -> None:
    conv = _config(user_module, model=f"{user_module.__name__}:conv_head", epochs=1)
    assert _fit(conv).epochs_run == 1
    with pytest.raises(ValueError, match="no linear head"):
        _fit(conv.model_copy(update={"layer_decay": 0.5}))
    with pytest.raises(ValueError, match="train.head: .* no module 'nope'"):
        _fit(_config(user_module, head="nope", epochs=1))


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(user_module: Any) -> None:
    config = _config(user_module, epochs=3, deterministic=True)
    states: list[dict[str, Any]] = []
    full = _fit(config, on_checkpoint=lambda epoch, state: states.append(copy.deepcopy(state)))
    resumed = _fit(config, resume=states[0])
    assert resumed.history == full.history


def test_the_model_must_be_a_module(user_module: Any) -> None:
    with pytest.raises(TypeError, match="returned str, not a torch.nn.Module"):
        _fit(_config(user_module, model=f"{user_module.__name__}:not_a_module"))


# --- the worker -----------------------------------------------------------------------------


def _spec(mod: Any, name: str, **train: Any) -> StudySpec:
    return StudySpec.model_validate(
        tiny_spec(
            name,
            budget={"n_trials": 1},
            space={"width": {"type": "int", "low": 8, "high": 32}},
            train={
                "model": f"{mod.__name__}:net",
                "dataset": f"{mod.__name__}:tensors",
                "epochs": 2,
                "batch_size": 32,
                **train,
            },
        )
    )


def test_a_space_parameter_that_is_no_train_key_goes_to_the_model(user_module: Any) -> None:
    spec = _spec(user_module, "own")
    config = trial_config(spec.train, {"width": 12, "lr": 0.1})
    assert config.model_args == {"width": 12} and config.lr == 0.1
    assert config.dataset_args == {}  # tensors() does not take it


def test_a_worker_tunes_the_users_model_and_recovers_from_oom(
    user_module: Any, sqlite_url: str
) -> None:
    spec = _spec(user_module, "own_oom", model=f"{user_module.__name__}:oom16", batch_size=64)
    handle = prepare(spec, sqlite_url)
    trial = next_trial(handle.study, handle.storage, spec)
    assert trial is not None
    outcome = run_trial(trial, spec, "cpu", threading.Event(), lambda e: None)

    assert outcome.state == TrialState.COMPLETE, outcome.reason
    assert outcome.attrs["oom_restarts"] == 2  # 64 -> 2 x 32 -> 4 x 16, the same 64 a step
    assert (outcome.attrs["batch_size"], outcome.attrs["accumulate"]) == (16, 4)
    assert user_module.BUILT[-1][0]["width"] == trial.params["width"]  # the trial's own


# --- hpo validate ---------------------------------------------------------------------------


def _one_line_exit_2(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.count("\n") == 1, result.output
    return result.output


def _write(tmp_path: Path, train: dict[str, Any], space: dict[str, Any] | None = None) -> Path:
    import yaml

    spec = tiny_spec("own", space=space or {"lr": {"type": "float", "low": 0.01, "high": 0.1}})
    spec["train"] = {"epochs": 2, **train}
    path = tmp_path / "studies" / "own.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_validate_finds_the_module_beside_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"beside_{uuid.uuid4().hex[:10]}"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / f"{name}.py").write_text(USER_MODULE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the import adds the spec's directory
    spec = _write(
        tmp_path,
        {"model": f"{name}:net", "dataset": f"{name}:tensors"},
        {"width": {"type": "int", "low": 8, "high": 64}},
    )
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert f"{name}:net on {name}:tensors" in result.output
    sys.modules.pop(name, None)


BAD = [
    ({"model": "no_such_module_x:net"}, None, "train.model", "cannot import 'no_such_module_x'"),
    ({"model": "{mod}:nothing"}, None, "train.model", "has no callable 'nothing'"),
    ({"model": "{mod}:no_classes"}, None, "train.model", "takes no `num_classes`"),
    ({"model": "{mod}:mlp"}, None, "train.model", "requires 'depth'"),
    ({"model": "{mod}:net", "model_args": {"widht": 3}}, None, "train.model_args.widht", "no"),
    ({"model": "{mod}:net"}, {"widht": {"type": "int", "low": 1, "high": 4}}, "space.widht", ""),
    ({"model": "{mod}:"}, None, "train.model", "not of the form 'package.module:function'"),
    ({"dataset": "{mod}:nothing"}, None, "train.dataset", "has no callable 'nothing'"),
    ({"model_args": {"width": 3}}, None, "train", "for your own model"),
]


@pytest.mark.parametrize(("train", "space", "where", "words"), BAD)
def test_validate_refuses_bad_user_code_in_one_line(
    user_module: Any,
    tmp_path: Path,
    train: dict[str, Any],
    space: dict[str, Any] | None,
    where: str,
    words: str,
) -> None:
    train = {
        k: v.format(mod=user_module.__name__) if isinstance(v, str) else v for k, v in train.items()
    }
    output = _one_line_exit_2(runner.invoke(app, ["validate", str(_write(tmp_path, train, space))]))
    assert f": {where}: " in output and words in output, output
    assert "own.yaml:" in output


def test_a_module_that_raises_on_import_is_refused_and_run_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"broken_{uuid.uuid4().hex[:10]}"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / f"{name}.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = _write(tmp_path, {"dataset": f"{name}:data"})
    output = _one_line_exit_2(runner.invoke(app, ["run", str(spec)]))
    assert "train.dataset: " in output and "raised RuntimeError: no GPU here" in output
    assert not list(tmp_path.glob("*.db")) and not (tmp_path / "hpo-logs").exists()
