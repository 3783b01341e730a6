"""hpo.api.validate, dashboard and proxy: what ``hpo validate``, ``dashboard`` and ``proxy`` call.

Real SQLite storage; the servers are bound, never served."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_spec

import hpo
from hpo.api import dashboard, proxy
from hpo.errors import SpecError


def test_validate_describes_the_study_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(budget={"n_trials": 4, "max_epochs_total": 30})))

    text = hpo.validate(path)

    assert text == (
        f"{path}: ok: study 'tiny', random sampler, none pruner, 4 trials or 30 epochs, "
        "1 parameters, cnn on digits, metric val_accuracy (maximize)"
    )


def test_validate_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**tiny_spec(), "budget": {"n_trails": 4}}))

    with pytest.raises(SpecError, match=r"s\.yaml.*budget\.n_trails"):
        hpo.validate(path)


def test_dashboard_binds_on_the_specs_storage_and_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(storage=url)))
    optuna.create_study(study_name="tiny", storage=url)

    board = dashboard(spec, port=0, artifacts=str(tmp_path))
    try:
        assert board.storage == url and board.study_name == "tiny" and board.port > 0
        assert board.study_id is not None and board.artifacts == str(tmp_path)
    finally:
        board.server.server_close()
    anywhere = dashboard(storage=url, port=0)  # no study named: every study in the storage
    anywhere.server.server_close()
    assert anywhere.study_name is None and anywhere.path == "/dashboard"


def test_proxy_opens_a_database_and_refuses_a_proxy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"

    opened = proxy(url, port=0)

    assert (opened.storage, opened.host, opened.port) == (url, "127.0.0.1", 0)
    with pytest.raises(SpecError, match="storage: the proxy serves a database URL"):
        proxy("grpc://head:13000")
