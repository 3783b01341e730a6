"""Scale: N worker processes on one node running fast synthetic trials against PostgreSQL,
directly and through hpo's gRPC proxy.

For each N: trials/s, report+should_prune latency p50/p99 (storage round trips, timed inside the
trials), the most database connections open at once (pg_stat_activity), failed trials and worker
errors, and duplicates (a grid study: any grid point run twice).

    python benchmarks/scale.py --workers 1,4,16,64 --trials-per-worker 8
    HPO_BENCH_POSTGRES=postgresql+psycopg2://postgres@127.0.0.1:5432/test (default)

``--fleet`` (root, ip netns, pgbouncer, initdb): nodes in network namespaces against a private
server with max_connections 100, through PgBouncer in transaction mode (with one node killed
mid-run: its trials must be found stale and retried) and through ``hpo proxy``; per run: exit
codes, exact budget, duplicates, failed trials, trials/s, report p50/p99, peak server
connections, memory per worker (benchmarks/_fleet.py):

    python benchmarks/scale.py --fleet --nodes 4 --pooled-workers 256 --proxy-workers 128

Prints JSON, then one summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import yaml

HERE = Path(__file__).parent
URL = os.environ.get("HPO_BENCH_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _spec(path: Path, name: str, points: int) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "objective": "_synthetic_objective:objective",
                "metric": {"name": "score"},
                "sampler": {"type": "grid", "seed": 0},
                "pruner": {"type": "none"},
                "retry": {"heartbeat_interval": 5, "grace_period": 60},
                "space": {"x": {"type": "float", "values": [float(i) for i in range(points)]}},
            }
        )
    )


class _ConnectionSampler(threading.Thread):
    """Polls pg_stat_activity; keeps the highest count of client connections seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.stop = 0, threading.Event()
        self.engine = sqlalchemy.create_engine(URL, poolclass=sqlalchemy.pool.NullPool)

    def run(self) -> None:
        query = sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        while not self.stop.wait(0.25):
            try:
                with self.engine.connect() as conn:
                    self.peak = max(self.peak, conn.execute(query).scalar_one() - 1)
            except sqlalchemy.exc.OperationalError:  # too many clients: the point of measuring
                pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_one(workers: int, per_worker: int, via_proxy: bool, tmp: Path) -> dict[str, object]:
    name = f"scale-{uuid.uuid4().hex[:8]}"
    points = workers * per_worker
    spec = tmp / f"{name}.yaml"
    _spec(spec, name, points)
    lat_dir = tmp / name
    lat_dir.mkdir()
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "HPO_BENCH_LATENCY_DIR": str(lat_dir)}
    proxy = None
    storage = URL
    if via_proxy:
        port = _free_port()
        proxy = subprocess.Popen(
            [sys.executable, "-m", "hpo", "proxy", "--storage", URL, "--port", str(port)],
            stderr=subprocess.DEVNULL,
            env=env,
        )
        storage = f"grpc://127.0.0.1:{port}"
    sampler = _ConnectionSampler()
    sampler.start()
    started = time.perf_counter()
    node = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpo",
            "run",
            str(spec),
            "--storage",
            storage,
            "--device",
            "cpu",
            "--workers",
            str(workers),
            "--logs-dir",
            str(tmp / "logs"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp,
    )
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if proxy:
        proxy.terminate()
        proxy.wait()
    trials = optuna.load_study(study_name=name, storage=URL).get_trials(deepcopy=False)
    runs = Counter(t.params.get("x") for t in trials if t.state.is_finished())
    lat = sorted(float(x) for f in lat_dir.glob("*.txt") for x in f.read_text().split())
    return {
        "workers": workers,
        "via": "proxy" if via_proxy else "postgres",
        "trials": len(trials),
        "wall_s": round(wall, 1),
        "trials_per_s": _throughput(trials),
        "report_ms_p50": round(statistics.median(lat), 2) if lat else None,
        "report_ms_p99": round(lat[int(0.99 * (len(lat) - 1))], 2) if lat else None,
        "peak_connections": sampler.peak,
        "failed_trials": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
        "exit_code": node.returncode,
        "duplicates": sum(n - 1 for n in runs.values() if n > 1),
    }


def _throughput(trials: list[optuna.trial.FrozenTrial]) -> float:
    """Finished trials per second between the first and the last completion (steady state:
    process start-up and imports are left out)."""
    ends = sorted(t.datetime_complete for t in trials if t.datetime_complete)
    if len(ends) < 2:
        return 0.0
    return round((len(ends) - 1) / (ends[-1] - ends[0]).total_seconds(), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,16,64")
    parser.add_argument("--trials-per-worker", type=int, default=20)
    parser.add_argument("--no-proxy", action="store_true", help="skip the gRPC proxy runs")
    parser.add_argument("--fleet", action="store_true", help="the fleet runs (see above)")
    parser.add_argument("--nodes", type=int, default=4, help="--fleet: nodes (namespaces)")
    parser.add_argument("--pooled-workers", type=int, default=256, help="--fleet: via PgBouncer")
    parser.add_argument("--proxy-workers", type=int, default=128, help="--fleet: via the proxy")
    parser.add_argument("--pool-size", type=int, default=40, help="--fleet: PgBouncer pool")
    parser.add_argument(
        "--report-sleep", type=float, default=0.0, help="--fleet: seconds between reports"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.fleet:
        os.environ["HPO_BENCH_REPORT_SLEEP"] = str(args.report_sleep)
        fleet_main(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(w) for w in args.workers.split(",")):
            for via_proxy in (False,) if args.no_proxy else (False, True):
                rows.append(run_one(n, args.trials_per_worker, via_proxy, Path(tmp)))
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"cpu_cores": os.cpu_count(), "runs": rows}, indent=2))
    summary = [
        f"{r['workers']}w/{r['via']}: {r['trials_per_s']} trials/s, "
        f"p99 {r['report_ms_p99']} ms, {r['peak_connections']} conns, "
        f"{r['duplicates']} dup, {r['failed_trials']} failed"
        for r in rows
    ]
    print("scale: " + "; ".join(summary))


def fleet_main(args: argparse.Namespace) -> None:
    from _fleet import Fleet, run_fleet

    fleet = Fleet(args.nodes, args.pool_size)
    rows = []
    plan = [("pgbouncer", args.pooled_workers, True)]
    if not args.no_proxy and args.proxy_workers:
        plan.append(("proxy", args.proxy_workers, False))
    try:
        for via, total, cut in plan:
            per_node = total // args.nodes
            rows.append(run_fleet(fleet, via, args.nodes, per_node, args.trials_per_worker, cut))
            print(json.dumps(rows[-1], default=str), file=sys.stderr)
    finally:
        fleet.close()
    print(json.dumps({"cpu_cores": os.cpu_count(), "runs": rows}, indent=2, default=str))
    print("scale fleet: " + "; ".join(_fleet_line(r) for r in rows))


def _fleet_line(r: dict[str, Any]) -> str:
    cut = r.get("cut") or {}
    line = (
        f"{r['workers']}w/{r['nodes']} nodes/{r['via']}: exits {r['exit_codes']}, "
        f"{r['complete']}/{r['budget']} complete, {r['duplicates']} dup, {r['failed']} failed, "
        f"{r['trials_per_s']} trials/s, p50/p99 {r['report_ms_p50']}/{r['report_ms_p99']} ms, "
        f"{r['peak_server_connections']} server conns, {r['worker_pss_mb_mean']} MB PSS/worker"
    )
    if cut:
        line += (
            f", killed node: {len(cut['running_at_kill'])} running -> {cut['failed_stale']} "
            f"stale in {cut['detected_s']} s, {cut['retried_complete']} retried"
        )
    return line


if __name__ == "__main__":
    main()
