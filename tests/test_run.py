"""``hpo run`` end to end: real worker processes, the embedded storage and the real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import pythonpath, tiny_spec
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


def hpo(*args: str, cwd: Path, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HPO_STORAGE", None) if "HPO_STORAGE" not in (env or {}) else None
    return subprocess.Popen(
        [sys.executable, "-m", "hpo", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials()


def test_run_two_workers_on_embedded_storage(write_spec, tmp_path: Path) -> None:
    spec = write_spec(tiny_spec("embedded", budget={"n_trials": 6}))

    proc = hpo("run", str(spec), "--workers", "2", cwd=tmp_path)
    out = finish(proc)

    assert proc.returncode == 0, out
    db = tmp_path / "hpo.db"
    assert db.exists(), "the embedded default lives in the working directory"
    trials = trials_of(f"sqlite:///{db}", "embedded")
    assert len(trials) == 6
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}
    for t in trials:
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert t.value == max(t.intermediate_values.values())  # objective_value: best
        for key in (
            "node",
            "device",
            "epochs_run",
            "seconds_per_epoch",
            "samples_per_second",
            "peak_memory_mb",
        ):
            assert key in t.user_attrs, key
    assert out.count("complete value=") == 6  # not a terminal: one line per finished trial
    assert "best val_accuracy" in out

    status = subprocess.run(
        [sys.executable, "-m", "hpo", "status", str(spec)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert status.returncode == 0 and "complete" in status.stdout
    best = subprocess.run(
        [sys.executable, "-m", "hpo", "best", str(spec), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    record = json.loads(best.stdout)
    assert record["value"] == max(t.value for t in trials)
    assert set(record["params"]) == {"lr"}


@pytest.mark.postgres
def test_two_nodes_join_one_postgres_study_with_exact_budget_and_pruning(
    write_spec, tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    spec = write_spec(
        tiny_spec(
            unique_name,
            sampler={"type": "tpe", "seed": 0, "n_startup_trials": 4},
            pruner={"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
            budget={"n_trials": 14},
            space={
                "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                "batch_size": {"type": "categorical", "choices": [32, 128]},
            },
            train={**tiny_spec()["train"], "epochs": 9, "fraction": 0.5},
        )
    )
    env = {"HPO_STORAGE": postgres_url}
    nodes = [hpo("run", str(spec), "--workers", "1", cwd=tmp_path, env=env) for _ in range(2)]
    outs = [finish(p) for p in nodes]

    assert [p.returncode for p in nodes] == [0, 0], outs
    trials = trials_of(postgres_url, unique_name)
    assert len(trials) == 14
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert states.count(TrialState.PRUNED) >= 1
    assert all(t.intermediate_values for t in trials)
    for t in trials:  # every epoch a trial ran was reported
        assert sorted(t.intermediate_values) == list(range(1, t.user_attrs["epochs_run"] + 1))
    assert all(o.count("value=") >= 1 for o in outs), "both nodes ran trials"


@pytest.mark.postgres
def test_joining_with_conflicting_direction_is_refused_and_writes_nothing(
    write_spec, tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    first = write_spec(tiny_spec(unique_name, budget={"n_trials": 1}), "a.yaml")
    assert finish(hpo("run", str(first), "--storage", postgres_url, cwd=tmp_path))
    before = len(trials_of(postgres_url, unique_name))
    flipped = write_spec(
        tiny_spec(
            unique_name,
            budget={"n_trials": 5},
            metric={"name": "val_loss", "direction": "minimize"},
        ),
        "b.yaml",
    )

    proc = hpo("run", str(flipped), "--storage", postgres_url, cwd=tmp_path)
    out = finish(proc)

    assert proc.returncode == 2, out
    assert "metric.direction" in out and "b.yaml" in out
    assert len(trials_of(postgres_url, unique_name)) == before


def test_password_is_never_printed(write_spec, tmp_path: Path) -> None:
    spec = write_spec(tiny_spec("pw"))
    url = "postgresql+psycopg2://hpo:s3cr3t-pw@127.0.0.1:1/hpo"
    proc = hpo("run", str(spec), "--storage", url, cwd=tmp_path)
    out = finish(proc)
    assert proc.returncode == 1
    assert "s3cr3t-pw" not in out and "***" in out


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("condition not reached")


def _running(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return [t for t in trials_of(url, name) if t.state == TrialState.RUNNING and t.user_attrs]
    except KeyError:
        return []


def test_ctrl_c_stops_cleanly_and_hands_the_trial_back(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        tiny_spec("ctrlc", budget={"n_trials": 3}, train={**tiny_spec()["train"], "epochs": 500})
    )
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = hpo("run", str(spec), "--workers", "1", cwd=tmp_path)
    _wait_for(lambda: _running(url, "ctrlc"))

    proc.send_signal(signal.SIGINT)
    out = finish(proc, timeout=60)

    assert proc.returncode == 130, out
    trials = trials_of(url, "ctrlc")
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["fail_reason"].startswith("interrupted")
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].params == failed[0].params


def test_killed_worker_is_restarted_and_its_trial_retried(write_spec, tmp_path: Path) -> None:
    spec = write_spec(
        tiny_spec("kill9", budget={"n_trials": 3}, train={**tiny_spec()["train"], "epochs": 12})
    )
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = hpo("run", str(spec), "--workers", "1", cwd=tmp_path)
    _wait_for(lambda: _running(url, "kill9"))
    victim = _running(url, "kill9")[0]

    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    out = finish(proc)

    assert proc.returncode == 0, out
    trials = trials_of(url, "kill9")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3, "the budget is met: the killed trial's retry completed"
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state == TrialState.FAIL and "worker died" in killed.user_attrs["fail_reason"]
    assert "restarted" in out


def test_objective_mode_tunes_user_code(write_spec, tmp_path: Path) -> None:
    (tmp_path / "userobj.py").write_text(
        "def quadratic(params, report):\n"
        "    for step in range(1, 4):\n"
        "        report(-(params['x'] - 2) ** 2 - 1 / step, step)\n"
        "    return -(params['x'] - 2) ** 2\n"
    )
    spec = write_spec(
        {
            "name": "userobj",
            "objective": "userobj:quadratic",
            "metric": {"name": "score", "direction": "maximize"},
            "sampler": {"type": "tpe", "seed": 1},
            "pruner": {"type": "median"},
            "budget": {"n_trials": 8},
            "space": {"x": {"type": "float", "low": -5, "high": 5}},
        }
    )
    proc = hpo(
        "run", str(spec), "--workers", "2", cwd=tmp_path, env={"PYTHONPATH": pythonpath(tmp_path)}
    )
    out = finish(proc)

    assert proc.returncode == 0, out
    trials = trials_of(f"sqlite:///{tmp_path / 'hpo.db'}", "userobj")
    assert len(trials) == 8
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.value == pytest.approx(-((t.params["x"] - 2) ** 2)) for t in complete)


def test_a_crashing_trial_is_retried_max_retries_times_and_the_study_goes_on(
    write_spec, tmp_path: Path
) -> None:
    # Only some trials fail (not the first three alike, which would stop the run early).
    (tmp_path / "flaky.py").write_text(
        "def objective(params, report):\n"
        "    if params['x'] > 0.7:\n"
        "        raise RuntimeError('boom in user code')\n"
        "    report(params['x'], 1)\n"
        "    return params['x']\n"
    )
    spec = write_spec(
        {
            "name": "flaky",
            "objective": "flaky:objective",
            "metric": {"name": "score"},
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"},
            "budget": {"n_trials": 8},
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )
    proc = hpo(
        "run", str(spec), "--workers", "1", cwd=tmp_path, env={"PYTHONPATH": pythonpath(tmp_path)}
    )
    out = finish(proc)

    assert proc.returncode == 0, out
    trials = trials_of(f"sqlite:///{tmp_path / 'hpo.db'}", "flaky")
    originals = [t for t in trials if "failed_trial" not in t.system_attrs]
    assert len(originals) == 8  # retries take no budget slot
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and all(t.params["x"] > 0.7 for t in failed)
    assert all("RuntimeError: boom in user code" in t.user_attrs["fail_reason"] for t in failed)
    assert all(t.state == TrialState.COMPLETE for t in trials if t.params["x"] <= 0.7)
    # A failure of the trial's own is retried exactly max_retries (default 2) times.
    for original in (t for t in originals if t.state == TrialState.FAIL):
        chain = [t for t in trials if t.system_attrs.get("failed_trial") == original.number]
        assert len(chain) == 2 and all(t.state == TrialState.FAIL for t in chain)
        assert [t.system_attrs["hpo:failures"] for t in chain] == [1, 2]
        assert all(t.params == original.params for t in chain)


def test_a_run_whose_first_trials_all_fail_alike_stops_with_that_error(
    write_spec, tmp_path: Path
) -> None:
    specs = tmp_path / "specs"  # the objective sits beside the spec; the run starts elsewhere
    specs.mkdir()
    (specs / "broken.py").write_text(
        "def objective(trial):\n    raise FileNotFoundError('data/train.csv')\n"
    )
    spec = specs / "study.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "broken",
                "objective": "broken:objective",
                "metric": {"name": "score"},
                "sampler": {"type": "random", "seed": 0},
                "pruner": {"type": "none"},
                "budget": {"n_trials": 30},
                "space": {"x": {"type": "float", "low": 0, "high": 1}},
            }
        )
    )
    proc = hpo("run", str(spec), "--workers", "2", cwd=tmp_path)
    out = finish(proc)

    assert proc.returncode == 1, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "FileNotFoundError: data/train.csv" in errors[0], out
    assert "the first 3 trials failed alike" in errors[0], out
    trials = trials_of(f"sqlite:///{tmp_path / 'hpo.db'}", "broken")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert 3 <= len(failed) <= 6, "stopped early, not after the whole budget"
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_missing_pretrained_weights_offline_exit_2_before_any_write(
    write_spec, tmp_path: Path
) -> None:
    spec = write_spec(
        tiny_spec(
            "noweights",
            train={
                **tiny_spec()["train"],
                "model": "resnet18",
                "pretrained": True,
                "download": False,
            },
        )
    )
    proc = hpo("run", str(spec), cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "hub")})
    out = finish(proc)

    assert proc.returncode == 2, out
    assert "train.pretrained: pretrained weights for resnet18 not found" in out
    assert not (tmp_path / "hpo.db").exists()
