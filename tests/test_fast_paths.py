"""The switch back to plain Optuna paths (``HPO_FAST_PATHS=0``, or an untested Optuna release):
what it turns off, that it says so in one line, and that a real ``hpo run`` still works on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import tiny_spec
from optuna.trial import TrialState

from hpo.spec import StudySpec
from hpo.study import build_pruner, build_sampler, claim, fail_stale, heartbeat, open_storage
from hpo.study import prepare as prepare_study
from hpo.study._optuna import fast_paths as switch
from hpo.study._optuna import storage_of
from hpo.study._optuna.fast_paths import fast_paths, off_reason
from hpo.study._optuna.hyperband import FastAshaPruner, FastHyperbandPruner
from hpo.study._optuna.mftpe import MultiFidelityTPESampler
from hpo.study._optuna.resilient import PlainResilientStorage, ResilientRDBStorage
from hpo.study._optuna.tpe import FastTPESampler
from hpo.study._optuna.trial_cache import TrialCache

NOTICE = "plain Optuna paths"


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HPO_FAST_PATHS", "0")
    fast_paths.cache_clear()
    yield
    fast_paths.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_switch() -> Iterator[None]:
    fast_paths.cache_clear()
    yield
    fast_paths.cache_clear()


def _spec(name: str, **overrides: object) -> StudySpec:
    base = tiny_spec(name, pruner={"type": "asha"}, budget={"n_trials": 5})
    return StudySpec.model_validate({**base, **overrides})


@pytest.mark.fast_paths
def test_the_switch_is_on_for_the_tested_release_and_off_outside_or_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HPO_FAST_PATHS", raising=False)
    # pyproject admits only the tested range (test below): the installed release is inside it
    assert off_reason() is None and fast_paths(), "pip installs only tested Optuna releases"
    below = switch.TESTED_BELOW
    next_release = f"{below.major}.{below.minor}.0"
    for outside in (next_release, "4.0.0"):
        monkeypatch.setattr(switch.optuna, "__version__", outside)
        assert f"Optuna {outside} is outside the range" in str(off_reason())
    monkeypatch.setenv("HPO_FAST_PATHS", "force")  # the canary's trial of a newer release
    assert off_reason() is None
    monkeypatch.undo()
    monkeypatch.setenv("HPO_FAST_PATHS", "0")
    assert off_reason() == "HPO_FAST_PATHS=0"
    monkeypatch.setenv("HPO_FAST_PATHS", "1")
    assert off_reason() is None


def test_plain_paths_build_optunas_own_sampler_pruner_and_storage(
    plain: None, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    tpe = _spec("p", sampler={"type": "tpe", "multi_fidelity": True})
    assert type(build_sampler(tpe)) is optuna.samplers.TPESampler
    assert type(build_pruner(tpe)) is optuna.pruners.SuccessiveHalvingPruner
    hyperband = _spec("h", pruner={"type": "hyperband"})
    assert type(build_pruner(hyperband)) is optuna.pruners.HyperbandPruner
    storage = open_storage(sqlite_url)
    assert type(storage) is PlainResilientStorage
    notices = [r.getMessage() for r in caplog.records if NOTICE in r.getMessage()]
    assert notices == [f"{NOTICE} (HPO_FAST_PATHS=0); results are the same, trials cost more"]


@pytest.mark.fast_paths
def test_fast_paths_build_hpos_own(sqlite_url: str) -> None:
    tpe = _spec("f", sampler={"type": "tpe"})
    assert type(build_sampler(tpe)) is FastTPESampler
    assert type(build_pruner(tpe)) is FastAshaPruner
    mf = _spec("m", sampler={"type": "tpe", "multi_fidelity": True})
    assert type(build_sampler(mf)) is MultiFidelityTPESampler
    hyperband = _spec("h", pruner={"type": "hyperband"})
    assert type(build_pruner(hyperband)) is FastHyperbandPruner
    assert type(open_storage(sqlite_url)) is ResilientRDBStorage


@pytest.mark.parametrize("url", ["sqlite", "postgres"])
def test_plain_claims_keep_the_budget_exact_and_beat_and_fail_stale_trials(
    plain: None, url: str, request: pytest.FixtureRequest, unique_name: str
) -> None:
    url = request.getfixturevalue("sqlite_url" if url == "sqlite" else "postgres_url")
    spec = _spec(unique_name, retry={"heartbeat_interval": 1, "grace_period": 2})
    handle = prepare_study(spec, url)
    assert not isinstance(storage_of(handle.study), TrialCache)  # Optuna's own cache
    trials = []
    while (trial := claim(handle.study)) is not None:
        trials.append(trial)
    assert len(trials) == 5, "the whole budget, and no trial more"
    all_trials = handle.study.get_trials()
    assert len(all_trials) == 5 and all(t.state == TrialState.RUNNING for t in all_trials)

    with heartbeat(trials[0], handle.storage):
        time.sleep(0.3)
    for trial in trials[1:]:
        handle.study.tell(trial, 1.0)
    # trial 0's heartbeat lapses (grace period 2 s). SQLite's clock (CURRENT_TIMESTAMP, which
    # Optuna reads for both the beat and the check) has whole seconds: 2.85 s can read as 2,
    # not stale (CI, Optuna 5.0 run: trial 0 still RUNNING). 3.2 s always reads 3 or more.
    time.sleep(3.2)
    fail_stale(handle.study, max_retries=1)
    states = {t.number: t.state for t in handle.study.get_trials()}
    assert states[0] == TrialState.FAIL
    retry = [t for t in handle.study.get_trials() if t.system_attrs.get("failed_trial") == 0]
    assert [t.state for t in retry] == [TrialState.WAITING], "the lost trial is queued again"


OBJECTIVE = """
import optuna


def objective(trial: optuna.Trial) -> float:
    x = trial.params["x"]
    for step in range(1, 10):
        trial.report(x * step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x * 9
"""


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["0", "1"])
def test_hpo_run_on_plain_paths_runs_the_whole_budget_with_one_notice(
    setting: str, tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    (tmp_path / "plainobj.py").write_text(OBJECTIVE)
    (tmp_path / "study.yaml").write_text(
        f"name: {unique_name}\n"
        "objective: plainobj:objective\n"
        "metric: {name: score, direction: maximize}\n"
        "sampler: {type: tpe, seed: 3, n_startup_trials: 4}\n"
        "pruner: {type: asha, max_resource: 9, reduction_factor: 3}\n"
        "budget: {n_trials: 16}\n"
        f"storage: {postgres_url}\n"
        "space: {x: {type: float, low: 0, high: 1}}\n"
    )
    env = {**os.environ, "HPO_FAST_PATHS": setting, "PYTHONPATH": str(tmp_path)}
    env.pop("HPO_STORAGE", None)
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "run", "study.yaml", "--workers", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    trials = optuna.load_study(study_name=unique_name, storage=postgres_url).get_trials()
    summary = [(t.number, t.state.name, t.system_attrs, t.user_attrs.get("worker")) for t in trials]
    assert len(trials) == 16, f"the budget is exact on both paths: {summary}\n{out}"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert any(t.state == TrialState.PRUNED for t in trials), "ASHA pruned on both paths"
    notices = [line for line in out.splitlines() if NOTICE in line]
    if setting == "0":
        assert notices and len(set(notices)) == 1, out
        assert len(notices) == 1, f"one line, not one per process:\n{out}"
    else:
        assert notices == []


def test_pyproject_admits_exactly_the_range_the_fast_paths_are_on_for() -> None:
    """What pip installs is what CI tested: the dependency's ``>=`` is the lowest release CI
    runs the suite on (``.ci/optuna_lowest.py``), its ``<`` the fast paths' upper bound, so a
    fresh install never lands outside the fast paths (nor on an untested release)."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.version import Version

    root = Path(__file__).parent.parent
    lowest = subprocess.run(
        [sys.executable, ".ci/optuna_lowest.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Version(lowest) == switch.TESTED_FROM
    project = tomllib.loads((root / "pyproject.toml").read_text())
    (optuna_req,) = (
        r for r in map(Requirement, project["project"]["dependencies"]) if r.name == "optuna"
    )
    bounds = {s.operator: Version(s.version) for s in optuna_req.specifier}
    assert bounds == {">=": switch.TESTED_FROM, "<": switch.TESTED_BELOW}
    assert Version(optuna.__version__) in optuna_req.specifier


@pytest.mark.postgres
def test_plain_claims_behind_the_grpc_proxy_never_create_a_trial(
    plain: None, postgres_url: str, unique_name: str
) -> None:
    """Behind a gRPC proxy no lock is shared: ``Study.ask`` would create a trial when another
    worker empties the pool between its check and its pop (6 trials of a budget of 5 in
    test_fleet's proxy run, 1 in 4 runs). The plain claim pops WAITING trials through the
    storage's atomic state change instead, as many threads as trials racing for them."""
    import socket
    import threading

    from optuna.storages import GrpcStorageProxy, get_storage, run_grpc_proxy_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = threading.Thread(
        target=run_grpc_proxy_server,
        args=(get_storage(postgres_url),),
        kwargs={"host": "127.0.0.1", "port": port, "thread_pool": None},
        daemon=True,
    )
    server.start()
    budget = 12
    spec = _spec(unique_name, budget={"n_trials": budget})
    handle = prepare_study(spec, postgres_url)
    pool = len(handle.study.get_trials())  # WAITING trials the node that set the budget made
    assert pool >= 6
    claimed: list[int] = []

    def worker() -> None:
        proxy = GrpcStorageProxy(host="127.0.0.1", port=port)
        proxy.wait_server_ready(timeout=30)
        study = optuna.load_study(study_name=unique_name, storage=proxy)
        while (trial := claim(study)) is not None:
            claimed.append(trial.number)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    numbers = [
        t.number
        for t in optuna.load_study(study_name=unique_name, storage=postgres_url).get_trials()
    ]
    assert sorted(claimed) == sorted(numbers) == list(range(pool))
