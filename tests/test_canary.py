"""The Optuna canary: one line in every case, never a failing exit for CI's sake, and a real
install and test run of a given release in a venv of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from packaging.version import Version

from hpo.study._optuna import canary
from hpo.study._optuna.fast_paths import TESTED_BELOW

ROOT = Path(__file__).parent.parent


def _canary(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpo.study._optuna.canary", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_reads_the_newest_release_from_pips_answer() -> None:
    out = "optuna (5.2.0)\nAvailable versions: 5.2.0, 5.1.0, 5.0.0\n  INSTALLED: 5.1.0\n"
    assert canary.parse_newest(out) == Version("5.2.0")
    with pytest.raises(canary.Unreachable, match="No matching distribution"):
        canary.parse_newest("", "WARNING: x\nERROR: No matching distribution found for optuna")


def test_an_unreachable_index_is_one_line_and_exit_0() -> None:
    done = _canary(
        env={
            "PIP_CONFIG_FILE": os.devnull,  # no configured mirrors: only the dead index below
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "PIP_FIND_LINKS": "",
        }
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("optuna canary: skipped, the package index could not be reached")


def test_adoption_hint_names_the_next_bound() -> None:
    ok = canary.adopt_hint(Version("5.3.1"), ok=True)
    assert "to 5.4, then run .ci/run" in ok and "TESTED_BELOW" in ok
    assert "make the failing tests pass" in canary.adopt_hint(Version("5.3.1"), ok=False)


@pytest.mark.slow
def test_checks_a_release_in_a_venv_of_its_own() -> None:
    """A real run: install a release other than ours beside this venv, run a test file under
    it, one verdict line; this interpreter's Optuna is untouched."""
    other = "5.0.0" if Version(optuna.__version__) != Version("5.0.0") else "5.1.0"
    assert Version(other) < TESTED_BELOW
    done = _canary("--version", other, "--tests", "tests/test_tpe.py")
    if "did not install" in done.stdout:
        pytest.skip(f"package index unreachable: {done.stdout.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"optuna {other} is out: contract tests pass (")
    assert "to adopt it, raise TESTED_BELOW" in line
    after = subprocess.run(
        [sys.executable, "-c", "import optuna; print(optuna.__version__)"],
        capture_output=True,
        text=True,
    )
    assert after.stdout.strip() == optuna.__version__


def test_a_failing_test_file_makes_the_verdict_fail(tmp_path: Path) -> None:
    """The verdict counts pytest's closing line: a failure is reported as such, exit 1."""
    bad = tmp_path / "test_canary_sample.py"
    bad.write_text("def test_fails():\n    assert False\n\ndef test_passes():\n    pass\n")
    passed, failed, closing = canary.run_tests(Path(sys.executable), [str(bad)])
    assert (passed, failed) == (1, 1), closing
