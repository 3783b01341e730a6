"""The search-efficiency benchmark keeps running: a tiny run of its harness, no peers needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_search_efficiency_runs_and_reports_every_method() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/search_efficiency.py",
            "--tasks",
            "digits_cnn",
            "--seeds",
            "2",
            "--budget",
            "100",
            "--workers",
            "1,2",
            "--processes",
            "1",
            "--methods",
            "random,tpe+hyperband,hpo",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    task = report["tasks"]["digits_cnn"]
    assert 0.5 < task["target_val_accuracy"] <= 1.0
    for workers in ("1", "2"):
        rows = task["workers"][workers]
        assert set(rows) == {"random", "tpe+hyperband", "hpo"}
        assert rows["random"]["ratio_vs_random"] in (1.0, None)
    assert out.strip().splitlines()[-1].startswith("search_efficiency")
