"""The canary for the next Optuna release: may hpo's fast paths be raised to cover it?

    python -m hpo.study._optuna.canary [--version X.Y.Z] [--tests PATH ...]

Asks the package index (through pip) for the newest Optuna release. When it is newer than the
range the fast paths are on for (:mod:`.fast_paths`, the same range as pyproject.toml), it
installs that release in a separate virtual environment layered over this one (torch and the
rest are shared, the new Optuna and whatever it needs newer shadow them), runs the contract
and side-by-side equality tests there with ``HPO_FAST_PATHS=force``, and prints one line::

    optuna 5.2.0 is out: contract tests pass (128); to adopt it, ...

It changes nothing: adopting a release is raising the range by hand (README, "Adopting a new
Optuna release"). Exit status: 0 when there is nothing to adopt, the index cannot be reached
(one line says so), or the tests pass; 1 when they fail. ``.ci/run`` runs it without letting
it fail CI: the blocking run stays on the tested range.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import venv
from pathlib import Path

from packaging.version import InvalidVersion, Version

from hpo.keys import ENV_FAST_PATHS
from hpo.study._optuna.fast_paths import FORCE, TESTED_BELOW, TESTED_FROM

#: What a new release must pass: the boundary's contract and hpo-vs-Optuna equality tests.
TESTS = ("tests/test_optuna_contract.py", "tests/test_tpe.py", "tests/test_hyperband.py")
ROOT = Path(__file__).resolve().parents[3]
PIP_FLAGS = ("--disable-pip-version-check", "--retries", "1", "--timeout", "20")


class Unreachable(Exception):
    """The package index did not answer with Optuna's releases."""


def newest_release(timeout: float = 120) -> Version:
    """The newest Optuna release on the package index pip is configured with."""
    cmd = [sys.executable, "-m", "pip", "index", "versions", "optuna", *PIP_FLAGS]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Unreachable(f"no answer in {timeout:.0f} s") from None
    return parse_newest(done.stdout, done.stderr)


def parse_newest(stdout: str, stderr: str = "") -> Version:
    """The version in ``pip index versions``' first line, ``optuna (X.Y.Z)``."""
    found = re.search(r"^optuna \(([^)]+)\)", stdout, re.MULTILINE)
    if found is None:
        errors = [ln for ln in stderr.splitlines() if ln.startswith("ERROR")] or ["no answer"]
        raise Unreachable(errors[-1].removeprefix("ERROR: "))
    try:
        return Version(found.group(1))
    except InvalidVersion:
        raise Unreachable(f"unreadable version {found.group(1)!r}") from None


def layered_venv(where: Path) -> Path:
    """A virtual environment at ``where`` that also sees this interpreter's packages (after its
    own); returns its python."""
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    lines = [f"import site; site.addsitedir({path!r})" for path in sorted(ours)]
    (Path(site) / "_hpo_canary_base.pth").write_text("\n".join(lines) + "\n")
    return python


def run_tests(python: Path, tests: list[str]) -> tuple[int, int, str]:
    """(passed, failed or errored, pytest's closing line) of ``tests`` under ``python``."""
    env = {**os.environ, ENV_FAST_PATHS: FORCE, "PYTHONPATH": str(ROOT)}
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    closing = (done.stdout.strip().splitlines() or ["(no output)"])[-1].strip("= ")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error)", closing)}
    failed = counts.get("failed", 0) + counts.get("error", 0)
    if done.returncode != 0 and not failed:  # pytest could not run the tests at all
        failed = 1
    return counts.get("passed", 0), failed, closing


def adopt_hint(version: Version, ok: bool) -> str:
    below = f"{version.major}.{version.minor + 1}"
    raise_range = (
        f"raise TESTED_BELOW in hpo/study/_optuna/fast_paths.py and optuna's '<' in "
        f"pyproject.toml to {below}, then run .ci/run"
    )
    if ok:
        return f"to adopt it, {raise_range}"
    return f"to adopt it, make the failing tests pass with HPO_FAST_PATHS=force, {raise_range}"


def check(version: Version, tests: list[str]) -> tuple[bool, str]:
    """Install ``version`` in a layered venv, run ``tests``; (passed, the one-line verdict)."""
    with tempfile.TemporaryDirectory(prefix="hpo-canary-") as tmp:
        python = layered_venv(Path(tmp) / "venv")
        pip = [str(python), "-m", "pip", "install", "-q", *PIP_FLAGS, f"optuna=={version}"]
        installed = subprocess.run(pip, capture_output=True, text=True)
        if installed.returncode != 0:
            why = (installed.stderr.strip().splitlines() or ["pip failed"])[-1]
            return False, f"optuna {version} is out: it did not install ({why})"
        seen = subprocess.run(
            [str(python), "-c", "import optuna; print(optuna.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if seen != str(version):  # the layering must let the new release shadow ours
            return False, f"optuna {version} is out: the canary's venv imports optuna {seen!r}"
        passed, failed, closing = run_tests(python, tests)
    ok = failed == 0 and passed > 0
    verdict = f"pass ({passed})" if ok else f"fail ({failed} of {passed + failed}: {closing})"
    return ok, f"optuna {version} is out: contract tests {verdict}; {adopt_hint(version, ok)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpo.study._optuna.canary")
    parser.add_argument("--version", help="check this release (default: the newest)")
    parser.add_argument("--tests", nargs="+", default=list(TESTS), help="test files to run")
    args = parser.parse_args(argv)
    if not (ROOT / "tests").is_dir():
        print(f"optuna canary: needs hpo's source checkout (no tests/ under {ROOT})")
        return 2
    try:
        version = Version(args.version) if args.version else newest_release()
    except Unreachable as exc:
        print(f"optuna canary: skipped, the package index could not be reached ({exc})")
        return 0
    except InvalidVersion:
        print(f"optuna canary: --version {args.version!r} is not a version")
        return 2
    if version < TESTED_BELOW and not args.version:
        print(
            f"optuna canary: {version} is the newest release, inside the tested range "
            f"{TESTED_FROM} to below {TESTED_BELOW}; nothing to adopt"
        )
        return 0
    ok, line = check(version, args.tests)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
