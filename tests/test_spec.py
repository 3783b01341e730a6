"""Spec validation: bad input names the file, line and YAML path, exits 2, writes nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml
from conftest import pg_study_count, tiny_spec
from typer.testing import CliRunner

from hpo import api
from hpo.cli import app
from hpo.errors import SpecError
from hpo.spec import SAMPLER_EXTRAS, GridSpec, StudySpec, load_spec

runner = CliRunner()


def _space(**params: object) -> dict[str, object]:
    return {"space": params}


BAD = [
    # (overrides or raw YAML, expected YAML path in the message, expected words)
    ({"colour": "red"}, "colour", "unknown key"),
    ({"budget": {"n_trials": "many"}}, "budget.n_trials", "must be a valid integer"),
    ({"budget": {"n_trials": 0}}, "budget.n_trials", "greater than or equal to 1"),
    (_space(lr={"type": "float", "low": 0.5, "high": 0.1}), "space.lr", "greater than high"),
    (_space(lr={"type": "float", "low": 0.0, "high": 0.1, "log": True}), "space.lr", "low > 0"),
    (
        _space(lr={"type": "float", "low": 0.1, "high": 0.2, "lg": True}),
        "space.lr.lg",
        "unknown key",
    ),
    (
        _space(lr={"type": "real", "low": 0.1, "high": 0.2}),
        "space.lr.type",
        "'real' is not a parameter type; one of float, int, categorical",
    ),
    (_space(lr={"low": 0.1}), "space.lr.type", "required: the parameter type, one of float"),
    (
        _space(batch_size={"type": "categorical", "choices": []}),
        "space.batch_size.choices",
        "at least 1",
    ),
    (
        _space(optimizer={"type": "categorical", "choices": ["sgd", "adamx"]}),
        "space.optimizer.choices",
        "'adamx'",
    ),
    (_space(colour={"type": "float", "low": 0.1, "high": 0.2}), "space.colour", "not a train: key"),
    (
        _space(batch_size={"type": "int", "low": 0, "high": 64}),
        "space.batch_size.low",
        "greater than or equal to 1",
    ),
    ({"sampler": {"type": "grid"}}, "space.lr", "grid sampler needs `values`"),
    (
        {"sampler": {"type": "annealing"}},
        "sampler.type",
        "'annealing' is not a sampler type; one of tpe, random, grid, cmaes, gp, qmc, nsgaii",
    ),
    ({"sampler": {"seed": 1}}, "sampler.type", "required: the sampler type, one of tpe, random"),
    ({"pruner": "asha"}, "pruner", "must be a mapping (key: value, ...), not 'asha'"),
    ({"pruner": {"type": "hyperband", "min_resource": 10}}, "pruner.min_resource", "greater than"),
    ({"train": {"model": "resnet999"}}, "train.model", "unknown model"),
    ({"train": {"dataset": "imagenet22k"}}, "train.dataset", "unknown dataset"),
    ({"train": {"dataset": "imagefolder", "data_dir": "/no/such/dir"}}, "train", "not a directory"),
    ({"metric": {"name": "val_f1"}}, "metric.name", "unknown metric"),
    (
        {"metric": {"name": "val_loss", "direction": "down"}},
        "metric.direction",
        "'maximize' or 'minimize'",
    ),
    ({"name": "bad name!"}, "name", "not a valid study name"),
    ({"objective": "no_such_module_xyz:f", "train": None}, "objective", "cannot import"),
    (
        _space(momentum={"type": "float", "low": 0.1, "high": 0.9, "when": {"optimizer": "sgd"}}),
        "space",
        "unknown parameter 'optimizer'",
    ),
    ({"budget": {}}, "budget.n_trials", "required"),
    (
        {
            "metric": [{"name": "val_accuracy"}, {"name": "val_loss", "direction": "minimize"}],
            "pruner": {"type": "hyperband"},
        },
        "pruner.type",
        "Optuna cannot prune a study of several metrics",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("overrides", "path", "words"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_spec_names_file_and_path_exits_2_and_writes_nothing(
    write_spec, tmp_path: Path, overrides: dict, path: str, words: str
) -> None:
    spec = tiny_spec()
    spec.update(overrides)
    spec = {k: v for k, v in spec.items() if v is not None}
    spec_file = write_spec(spec)
    db = tmp_path / "must-not-exist.db"

    result = runner.invoke(app, ["run", str(spec_file), "--storage", f"sqlite:///{db}"])

    assert result.exit_code == 2, result.output
    assert str(spec_file) in result.output
    assert f": {path}:" in result.output
    assert words in result.output
    assert not db.exists()


@pytest.mark.postgres
def test_bad_spec_writes_nothing_to_postgres(
    write_spec, postgres_url: str, unique_name: str
) -> None:
    before = pg_study_count(postgres_url)
    spec = tiny_spec(unique_name, budget={"n_trials": -1})

    result = runner.invoke(app, ["run", str(write_spec(spec)), "--storage", postgres_url])

    assert result.exit_code == 2
    assert "budget.n_trials" in result.output
    assert pg_study_count(postgres_url) == before


def test_error_names_the_line(write_spec) -> None:
    path = write_spec(
        "name: x\nbudget: {n_trials: 2}\nspace:\n  lr: {type: float, low: 2, high: 1}\n"
    )
    with pytest.raises(
        SpecError, match=r"study.yaml:4: space.lr: low \(2.0\) is greater than high"
    ):
        load_spec(path)


def test_missing_file_and_invalid_yaml(write_spec, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no such study file" in missing.output
    broken = runner.invoke(app, ["validate", str(write_spec("name: [unclosed\n"))])
    assert broken.exit_code == 2 and "invalid YAML" in broken.output


def test_validate_accepts_the_shipped_studies() -> None:
    for path in sorted(Path(__file__).parent.parent.joinpath("studies").glob("*.yaml")):
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 0, f"{path}: {result.output}"
        assert "ok" in result.output


def test_spec_is_immutable_and_train_keys_tune(write_spec) -> None:
    spec = load_spec(
        write_spec(
            tiny_spec(
                space={
                    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
                    "momentum": {
                        "type": "float",
                        "low": 0.5,
                        "high": 0.99,
                        "when": {"optimizer": "sgd"},
                    },
                }
            )
        )
    )
    with pytest.raises(ValueError):
        spec.name = "other"  # type: ignore[misc]
    assert set(spec.space) == {"optimizer", "momentum"}
    assert spec.space["momentum"].conditions() == {"optimizer": ["sgd"]}


def test_grid_budget_defaults_to_every_point_and_skips_inactive(write_spec) -> None:
    spec = load_spec(
        write_spec(
            tiny_spec(
                sampler={"type": "grid"},
                budget={},
                space={
                    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
                    "momentum": {
                        "type": "float",
                        "values": [0.8, 0.9],
                        "when": {"optimizer": "sgd"},
                    },
                    "lr": {"type": "float", "values": [0.01, 0.1]},
                },
            )
        )
    )
    assert isinstance(spec.sampler, GridSpec)
    # sgd x 2 momenta x 2 lrs + adam x 2 lrs (momentum inactive, not multiplied)
    assert spec.n_trials == 6
    assert sum("momentum" not in p for p in spec.grid()) == 2


def test_objective_spec_has_no_train_block(write_spec, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "userobj.py").write_text("def f(params, report):\n    return params['x']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    base = {
        "name": "o",
        "objective": "userobj:f",
        "budget": {"n_trials": 2},
        "metric": {"name": "score"},
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
    }
    with pytest.raises(SpecError, match="pruner.max_resource: required with a custom objective"):
        load_spec(write_spec(base))  # the default pruner needs the epochs of a full trial
    base["pruner"] = {"type": "none"}
    assert load_spec(write_spec(base)).objective == "userobj:f"
    with pytest.raises(SpecError, match="train: a study with `objective` has no `train` block"):
        load_spec(write_spec({**base, "train": {"epochs": 2}}))
    with pytest.raises(SpecError, match="has no callable 'g'"):
        load_spec(write_spec({**base, "objective": "userobj:g"}))


def _run_bad(spec_file: Path, tmp_path: Path) -> str:
    """Run a bad spec: exit 2, no traceback, nothing written; returns the output."""
    db = tmp_path / "must-not-exist.db"
    result = runner.invoke(app, ["run", str(spec_file), "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert not db.exists()
    return result.output


def test_binary_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    output = _run_bad(path, tmp_path)
    assert output.count("\n") == 1 and f"{path}: not a UTF-8 text file" in output


def test_deeply_nested_yaml_is_one_line_not_a_recursion_error(write_spec, tmp_path: Path) -> None:
    output = _run_bad(write_spec("[" * 20_000), tmp_path)
    assert output.count("\n") == 1 and "nested too deeply" in output


def test_duplicate_key_names_the_line_and_key(write_spec, tmp_path: Path) -> None:
    text = (
        "name: dup\nbudget: {n_trials: 2}\nspace:\n"
        "  lr: {type: float, low: 0.01, high: 0.1}\n"
        "  lr: {type: float, low: 0.5, high: 0.9}\n"
    )
    output = _run_bad(write_spec(text), tmp_path)
    assert "study.yaml:5: space.lr: duplicate key (first at line 4)" in output


def test_condition_on_a_value_the_parent_never_takes_is_refused(write_spec, tmp_path: Path) -> None:
    spec = tiny_spec(
        space={
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            "momentum": {
                "type": "float",
                "low": 0.5,
                "high": 0.99,
                "when": {"optimizer": "lbfgs"},
            },
        }
    )
    output = _run_bad(write_spec(spec), tmp_path)
    assert ": space.momentum.when.optimizer: " in output
    assert "'lbfgs'" in output and "never takes" in output


def test_condition_values_inside_a_numeric_range_are_accepted(write_spec) -> None:
    spec = tiny_spec(
        space={
            "epochs": {"type": "int", "low": 1, "high": 3},
            "lr": {"type": "float", "low": 0.01, "high": 0.1, "when": {"epochs": [2, 3]}},
        }
    )
    assert load_spec(write_spec(spec)).space["lr"].conditions() == {"epochs": [2, 3]}
    spec["space"]["lr"]["when"] = {"epochs": 7}
    with pytest.raises(SpecError, match=r"space.lr.when.epochs: .*never takes 7"):
        load_spec(write_spec(spec))


def test_many_unknown_keys_are_reported_first_five_and_a_count(write_spec, tmp_path: Path) -> None:
    # 8,000 keys: the quadratic report this replaced took 18 s here (a wall-clock bound failed
    # on a loaded machine; `pytest --durations` shows a regression).
    lines = [f"junk_{i}: {i}" for i in range(8_000)]
    path = write_spec("name: many\nbudget: {n_trials: 2}\n" + "\n".join(lines) + "\n")
    output = _run_bad(path, tmp_path)
    assert output.count("unknown key") == 5
    assert "and 7995 more problems" in output
    assert len(output.splitlines()) == 6


@pytest.mark.parametrize(
    "sampler",
    [
        {"type": "gp", "seed": 3, "n_startup_trials": 4, "deterministic_objective": True},
        {"type": "qmc", "qmc_type": "halton", "scramble": False},
        {"type": "nsgaii", "population_size": 8, "crossover_prob": 0.8},
        {"type": "cmaes", "sigma0": 0.1, "restart_strategy": "ipop"},
    ],
    ids=lambda s: s["type"],
)
def test_every_optuna_sampler_is_a_spec_sampler_with_its_options(sampler: dict) -> None:
    if sampler["type"] == "cmaes":
        pytest.importorskip("cmaes")
    spec = StudySpec.model_validate(tiny_spec(sampler=sampler))
    assert spec.sampler.model_dump(exclude_unset=True) == sampler


def test_a_sampler_without_its_extra_is_one_line_naming_the_extra_exit_2_nothing_written(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SAMPLER_EXTRAS, "gp", (("no_such_module_xyz",), "gp"))
    db = tmp_path / "must-not-exist.db"
    spec_file = write_spec(tiny_spec(sampler={"type": "gp"}))

    for args in (["validate"], ["run", "--storage", f"sqlite:///{db}"]):
        result = runner.invoke(app, [args[0], str(spec_file), *args[1:]])

        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1, result.output
        assert ": sampler.type: the gp sampler needs 'no_such_module_xyz'" in result.output
        assert "pip install 'hpo[gp]'" in result.output
    assert not db.exists()


def test_cmaes_without_its_package_names_the_extra(write_spec) -> None:
    if importlib.util.find_spec("cmaes") is not None:
        pytest.skip("cmaes is installed")
    with pytest.raises(SpecError, match=r"sampler.type: the cmaes sampler .*hpo\[cmaes\]"):
        load_spec(write_spec(tiny_spec(sampler={"type": "cmaes"})))


def _objective_file(directory: Path, source: str) -> str:
    """Write ``source`` as a uniquely named module in ``directory``; returns its name."""
    import uuid

    name = f"obj_{uuid.uuid4().hex[:10]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    return name


def _objective_spec(ref: str) -> dict[str, object]:
    return {
        "name": "o",
        "objective": ref,
        "budget": {"n_trials": 2},
        "pruner": {"type": "none"},
        "metric": {"name": "score"},
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
    }


@pytest.mark.parametrize(
    ("source", "form"),
    [
        ("def f(trial):\n    return trial.params['x']\n", "trial"),
        ("import optuna\ndef f(t: optuna.Trial) -> float:\n    return 0.0\n", "trial"),
        (
            "from __future__ import annotations\nimport optuna\n"
            "def f(t: optuna.Trial, verbose: bool = False) -> float:\n    return 0.0\n",
            "trial",
        ),
        ("def f(params, report):\n    return params['x']\n", "params"),
    ],
)
def test_objective_forms_are_told_apart_by_signature(
    source: str, form: str, tmp_path: Path, monkeypatch
) -> None:
    from hpo.spec import load_objective, objective_form

    monkeypatch.setattr(sys, "path", list(sys.path))
    name = _objective_file(tmp_path / "specs", source)
    spec_file = tmp_path / "specs" / "study.yaml"
    spec_file.write_text(yaml.safe_dump(_objective_spec(f"{name}:f"), sort_keys=False))

    assert load_spec(spec_file).objective == f"{name}:f"  # found next to the spec file
    assert objective_form(load_objective(f"{name}:f")) == form


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def f(params):\n    return 0.0\n", "takes 1 parameter (params)"),
        ("def f(a, b, c):\n    return 0.0\n", "takes 3 parameters (a, b, c)"),
        ("def f():\n    return 0.0\n", "takes 0 parameters"),
        ("f = 3\n", "no callable 'f'"),
        ("import no_such_module_abc\ndef f(trial):\n    return 0.0\n", "cannot import"),
    ],
)
def test_bad_objective_is_one_line_naming_file_and_field(
    source: str, words: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = _objective_file(tmp_path / "specs", source)
    spec_file = tmp_path / "specs" / "study.yaml"
    spec_file.write_text(yaml.safe_dump(_objective_spec(f"{name}:f"), sort_keys=False))

    for command in (["validate", str(spec_file)], None):
        if command is None:
            output = _run_bad(spec_file, tmp_path)
        else:
            result = runner.invoke(app, command)
            assert result.exit_code == 2, result.output
            output = result.output
        assert output.count("\n") == 1, output
        assert output.startswith(f"error: {spec_file}:") and words in output
        assert output.split(": ")[2] == "objective", output


def test_objective_module_resolves_from_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = _objective_file(tmp_path / "work", "def f(trial):\n    return 0.0\n")
    spec_file = tmp_path / "specs" / "study.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(yaml.safe_dump(_objective_spec(f"{name}:f"), sort_keys=False))
    monkeypatch.chdir(tmp_path / "work")

    result = runner.invoke(app, ["validate", str(spec_file)])
    assert result.exit_code == 0, result.output
    assert f"objective {name}:f (trial)" in result.output


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"gpus_per_trial": 0}, "resources.gpus_per_trial: must be greater than or equal to 1"),
        ({"gpus_per_trial": "two"}, "resources.gpus_per_trial: must be a valid integer"),
        ({"gpus": 2}, "resources.gpus: unknown key"),
    ],
)
def test_bad_resources_are_one_line_naming_file_and_field(
    write_spec, tmp_path: Path, resources: dict, message: str
) -> None:
    output = _run_bad(write_spec(tiny_spec(resources=resources)), tmp_path)
    assert output.count("\n") == 1 and "study.yaml:25: " + message in output, output


def test_gpus_per_trial_validates_and_needs_the_built_in_trainer(write_spec) -> None:
    path = write_spec(tiny_spec(resources={"gpus_per_trial": 2}))
    assert load_spec(path).resources.gpus_per_trial == 2
    assert "cnn on digits (2 GPUs per trial)" in api.validate(path)
    assert load_spec(write_spec(tiny_spec())).resources.gpus_per_trial == 1
    (write_spec("def f(params, report):\n    return 1.0\n", "userobj2.py"))
    objective = {"name": "o", "objective": "userobj2:f", "resources": {"gpus_per_trial": 2}}
    with pytest.raises(SpecError, match="resources.gpus_per_trial: several processes per trial"):
        load_spec(write_spec(objective))
