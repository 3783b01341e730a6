"""Reading a study: the report, the export, the notes on the study, and optuna-dashboard itself
(its JSON API, and its pages in headless Chromium) on a study run on the real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import tiny_spec
from PIL import Image
from typer.testing import CliRunner

from hpo.cli import app
from hpo.insight import start_dashboard, write_report
from hpo.insight.plots import PLOTS, skip_reason
from hpo.spec import StudySpec, TrainConfig
from hpo.study import ATTR_NODES, find, prepare, record_node, system_attrs
from hpo.worker import WorkerContext, run_worker

REPORT_SPEC = tiny_spec(
    "report",
    description="lr x batch size on digits, for the report tests",
    sampler={"type": "tpe", "seed": 0, "n_startup_trials": 3},
    budget={"n_trials": 5},
    space={
        "lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
        "batch_size": {"type": "categorical", "choices": [32, 128]},
    },
    train={**tiny_spec()["train"], "epochs": 2, "fraction": 0.25},
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished 5-trial study in SQLite, run in-process by the real worker loop and trainer.

    Returns the spec file and the storage URL.
    """
    root = tmp_path_factory.mktemp("finished")
    spec_path = root / "study.yaml"
    spec_path.write_text(yaml.safe_dump(REPORT_SPEC, sort_keys=False))
    url = f"sqlite:///{root / 'hpo.db'}"
    spec = StudySpec.model_validate(REPORT_SPEC)
    record_node(prepare(spec, url), "node-a", ["/venv/bin/hpo", "run", str(spec_path)])
    run_worker(WorkerContext(spec, url), threading.Event(), lambda event: None)
    return spec_path, url


def hpo(*args: str) -> Any:
    """``hpo ARGS`` in-process; the result has ``exit_code`` and ``stdout``."""
    return CliRunner().invoke(app, list(args))


def test_report_writes_html_pngs_best_params_and_trials(
    finished: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path, url = finished
    monkeypatch.setenv("MPLBACKEND", "Agg")
    result = hpo("report", str(spec_path), "--storage", url, "-o", str(tmp_path / "r"))
    assert result.exit_code == 0, result.stdout

    out = tmp_path / "r"
    page = (out / "report.html").read_text()
    for plot in PLOTS:
        assert f'id="{plot.name}"' in page, plot.name  # every plot drawn, none skipped
        with Image.open(out / f"{plot.name}.png") as image:
            image.verify()
    assert page.count("Plotly.newPlot(") == len(PLOTS)
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inlined: offline
    assert "lr x batch size on digits" in page and "hpo run" in page  # description, nodes
    assert "skipped" not in result.stdout

    study = find("report", url)
    best = yaml.safe_load((out / "best_params.yaml").read_text())
    assert best == study.best_params
    spec = StudySpec.model_validate(REPORT_SPEC)
    TrainConfig.model_validate({**spec.train.model_dump(), **best})
    tuned = {**REPORT_SPEC, "train": {**REPORT_SPEC["train"], **best}, "space": {}}
    assert StudySpec.model_validate(tuned).train.lr == best["lr"]  # a spec that reruns the best
    assert 1e-3 <= best["lr"] <= 0.5 and best["batch_size"] in (32, 128)

    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]


def test_report_on_a_study_with_no_finished_trial_skips_plots_with_a_note(
    sqlite_url: str, tmp_path: Path
) -> None:
    prepare(StudySpec.model_validate(tiny_spec("empty", budget={"n_trials": 3})), sqlite_url)

    report = write_report(find("empty", sqlite_url), tmp_path / "r")

    assert set(report.skipped) == {p.name for p in PLOTS}
    assert report.skipped["param_importances"] == "no completed trial yet"
    assert report.skipped["intermediate_values"] == "no trial reported epochs"
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count("Skipped: ") == len(PLOTS)
    assert not (tmp_path / "r" / "best_params.yaml").exists()
    assert len((tmp_path / "r" / "trials.csv").read_text().splitlines()) == 1 + 3


def test_importances_need_a_few_completed_trials(finished: tuple[Path, str]) -> None:
    trials = find("report", finished[1]).trials
    importances = next(p for p in PLOTS if p.name == "param_importances")
    history = next(p for p in PLOTS if p.name == "optimization_history")

    assert skip_reason(importances, trials) is None
    assert "at least 4 completed trials (the study has 2)" in str(
        skip_reason(importances, trials[:2])
    )
    assert skip_reason(history, trials[:2]) is None


def test_export_csv_and_json(finished: tuple[Path, str], tmp_path: Path) -> None:
    spec_path, url = finished
    study = find("report", url)

    as_csv = hpo("export", str(spec_path), "--storage", url)
    assert as_csv.exit_code == 0, as_csv.stdout
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == len(study.trials) == 5
    assert {"params_lr", "params_batch_size", "user_attrs_samples_per_second"} <= set(rows[0])
    assert all(r["state"] == "COMPLETE" and float(r["duration_s"]) > 0 for r in rows)

    target = tmp_path / "trials.json"
    as_json = hpo("export", "--study", "report", "--storage", url, "-o", str(target))
    assert as_json.exit_code == 0, as_json.stdout
    doc = json.loads(target.read_text())
    assert doc["study"] == "report" and doc["metric"] == "val_accuracy"
    assert len(doc["trials"]) == 5
    first = doc["trials"][0]
    assert first["params"] == study.trials[0].params
    assert first["intermediate_values"] == {
        "1": pytest.approx(study.trials[0].intermediate_values[1]),
        "2": pytest.approx(study.trials[0].intermediate_values[2]),
    }
    assert first["user_attrs"]["epochs_run"] == 2


def test_nodes_and_note_record_what_ran_without_passwords(sqlite_url: str) -> None:
    from optuna_dashboard import get_note, save_note

    spec = StudySpec.model_validate(tiny_spec("noted", description="why this study exists"))
    handle = prepare(spec, sqlite_url)
    secret = "postgresql+psycopg2://hpo:s3cr3t-pw@db:5432/hpo"
    record_node(handle, "node-a", ["/x/hpo/__main__.py", "run", "a.yaml", "--storage", secret])
    record_node(handle, "node-b", ["/venv/bin/hpo", "run", "a.yaml", f"--storage={secret}"])

    nodes = system_attrs(handle.study)[ATTR_NODES]
    assert [n["node"] for n in nodes] == ["node-a", "node-b"]
    assert nodes[0]["command"] == (
        "python -m hpo run a.yaml --storage 'postgresql+psycopg2://hpo:***@db:5432/hpo'"
    )
    assert "s3cr3t" not in json.dumps(nodes) and "***" in nodes[1]["command"]
    note = get_note(handle.study)
    assert "why this study exists" in note and "node-b" in note and "s3cr3t" not in note

    save_note(handle.study, "my own words")  # a person edits the note in the dashboard
    record_node(handle, "node-c", ["hpo", "run", "a.yaml"])
    assert get_note(handle.study) == "my own words"
    assert len(system_attrs(handle.study)[ATTR_NODES]) == 3


def test_dashboard_creates_the_schema_of_a_new_embedded_storage(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    board = start_dashboard(f"sqlite:///{db}", "127.0.0.1", 0)
    thread = threading.Thread(target=board.serve, daemon=True)
    thread.start()
    try:
        studies = _get_json(f"http://127.0.0.1:{board.port}/api/studies")
    finally:
        board.server.shutdown()
        thread.join(10)
    assert studies == {"study_summaries": []}
    assert db.exists()
    lines = board.how_to_reach("gpu-node-7")
    assert f"ssh -L {board.port}:127.0.0.1:{board.port} gpu-node-7" in lines[2]
    assert not any("warning" in line for line in lines)
    board.host = "0.0.0.0"
    assert "no authentication" in board.how_to_reach("gpu-node-7")[-1]


# --- optuna-dashboard on a study run on the real PostgreSQL --------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_json(url: str, proc: subprocess.Popen, timeout: float = 60) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"hpo dashboard exited {proc.returncode}: {proc.stdout.read()}")
        try:
            return _get_json(url)
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Any:
    """``hpo run`` (two workers) on PostgreSQL, then ``hpo dashboard`` on it, as subprocesses."""
    root = tmp_path_factory.mktemp("served")
    name = f"t-{uuid.uuid4().hex[:12]}"
    spec_path = root / "study.yaml"
    spec = tiny_spec(
        name,
        description="dashboard test study",
        budget={"n_trials": 4},
        train={**tiny_spec()["train"], "epochs": 2, "fraction": 0.5},
    )
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "run",
            str(spec_path),
            "--storage",
            postgres_url,
            "--workers",
            "2",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpo",
            "dashboard",
            str(spec_path),
            "--storage",
            postgres_url,
            "--port",
            str(port),
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_json(f"{base}/api/studies", proc)
        yield base, name
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_api_lists_the_study_and_its_trials(served: Any) -> None:
    base, name = served
    studies = _get_json(f"{base}/api/studies")["study_summaries"]
    (study,) = [s for s in studies if s["study_name"] == name]
    detail = _get_json(f"{base}/api/studies/{study['study_id']}")

    assert detail["name"] == name and detail["directions"] == ["maximize"]
    assert len(detail["trials"]) == 4
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    assert detail["has_intermediate_values"]
    assert "dashboard test study" in detail["note"]["body"]
    assert "-m hpo run" in detail["note"]["body"]
    assert (
        "**Search:** `random` sampler (seed 0), `none` pruner; budget 4 trials"
        in (detail["note"]["body"])
    )
    assert detail["objective_names"] == ["val_accuracy"]  # not "Objective 0"


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_serves_each_trials_best_model(served: Any) -> None:
    base, name = served
    assert _get_json(f"{base}/api/meta")["artifact_is_available"]
    (study,) = [
        s for s in _get_json(f"{base}/api/studies")["study_summaries"] if s["study_name"] == name
    ]
    detail = _get_json(f"{base}/api/studies/{study['study_id']}")
    for trial in detail["trials"]:
        (artifact,) = trial["artifacts"]
        assert artifact["filename"] == "best_model.pt"
        url = f"{base}/artifacts/{study['study_id']}/{trial['trial_id']}/{artifact['artifact_id']}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert len(response.read()) > 1000  # the weights


def _chromium(*args: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("HPO_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium required (HPO_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium)")
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"hpo-chromium-{uuid.uuid4().hex}"
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _text(dom: str) -> str:
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_pages_in_headless_chromium_show_the_trials(served: Any, tmp_path: Path) -> None:
    base, name = served
    (study,) = [
        s for s in _get_json(f"{base}/api/studies")["study_summaries"] if s["study_name"] == name
    ]
    page = f"{base}/dashboard/studies/{study['study_id']}"

    shot = tmp_path / "dashboard.png"  # the test's artifact: look at it
    dom = _chromium(
        "--dump-dom", f"--screenshot={shot}", "--window-size=1280,900", f"{page}/trials"
    )

    trials = _text(dom)
    assert f"{name} (id={study['study_id']})" in trials
    assert "4 Trials" in trials
    for number in range(4):
        assert f"Trial {number} Complete" in trials
    assert "best_model.pt" in trials  # the selected trial's Artifacts section
    history = _text(_chromium("--dump-dom", "--window-size=1280,900", page))
    assert "val_accuracy" in history and "Objective 0" not in history
    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        image.verify()
    assert shot.stat().st_size > 20_000, "a blank page compresses to a few KB"
