"""The fleet runs of ``benchmarks/scale.py --fleet``: several ``hpo run`` nodes, each in a network
namespace of its own, against a private PostgreSQL with ``max_connections`` 100, through
PgBouncer (transaction pooling) or through ``hpo proxy``; light workers (the synthetic objective,
no torch). Optionally one node behind the pooler is killed (kill -9 of every process in its
namespace) mid-run: its trials must be found stale by the other nodes and retried.

Needs root (ip netns), Debian's ``pgbouncer`` and PostgreSQL's ``initdb``; the private server and
PgBouncer are started with the test helpers (tests/pgserver.py, tests/pgbouncer.py).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import sqlalchemy
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

from pgbouncer import PgBouncer  # noqa: E402
from pgserver import PrivatePostgres, _free_port  # noqa: E402

FAIL = optuna.trial.TrialState.FAIL
COMPLETE = optuna.trial.TrialState.COMPLETE


class Namespace:
    """A network namespace joined to this host by a veth pair on a /30 of its own."""

    def __init__(self, index: int) -> None:
        tag = uuid.uuid4().hex[:5]
        self.ns, self.host_if, self.ns_if = f"hpob-{tag}", f"hpb{tag}a", f"hpb{tag}b"
        octet = int(tag[:2], 16) % 240 + index  # one /30 in 10.232.<octet>.0 per node
        self.host_ip, self.ns_ip = f"10.232.{octet}.1", f"10.232.{octet}.2"

    def _run(self, *args: str, ns: bool = False) -> None:
        prefix = ["ip", "netns", "exec", self.ns] if ns else []
        subprocess.run([*prefix, *args], check=True, capture_output=True)

    def up(self) -> Namespace:
        self._run("ip", "netns", "add", self.ns)
        self._run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._run("ip", "link", "set", self.ns_if, "netns", self.ns)
        self._run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self._run("ip", "link", "set", self.host_if, "up")
        self._run("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=True)
        self._run("ip", "link", "set", self.ns_if, "up", ns=True)
        self._run("ip", "link", "set", "lo", "up", ns=True)
        return self

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill(self) -> None:
        """kill -9 of every process in the namespace (the node's supervisor and workers)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def down(self) -> None:
        self.kill()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


class Sampler(threading.Thread):
    """Every 2 s: client connections on the server (pg_stat_activity), and the memory of this
    benchmark's worker processes (RSS, and PSS: shared pages divided among their sharers)."""

    def __init__(self, server_url: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.tag, self.stop = tag, threading.Event()
        self.peak_connections, self.peak_workers = 0, 0
        self.rss: dict[int, int] = {}
        self.pss: dict[int, int] = {}
        self.engine = sqlalchemy.create_engine(server_url, poolclass=sqlalchemy.pool.NullPool)

    def _connections(self) -> None:
        query = sqlalchemy.text(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        )
        try:
            with self.engine.connect() as conn:
                self.peak_connections = max(self.peak_connections, conn.execute(query).scalar_one())
        except sqlalchemy.exc.OperationalError:  # too many clients: the point of measuring
            pass

    def _memory(self) -> None:
        seen = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                if b"hpo.worker" not in cmd or self.tag.encode() not in b" ".join(cmd):
                    continue
                rss = _kb(proc / "status", "VmRSS:")
                pss = _kb(proc / "smaps_rollup", "Pss:")
            except OSError:
                continue
            seen += 1
            pid = int(proc.name)
            self.rss[pid] = max(self.rss.get(pid, 0), rss)
            self.pss[pid] = max(self.pss.get(pid, 0), pss)
        self.peak_workers = max(self.peak_workers, seen)

    def run(self) -> None:
        while not self.stop.wait(2.0):
            self._connections()
            self._memory()


def _kb(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def _spec(path: Path, name: str, points: int) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "objective": "_synthetic_objective:objective",
                "metric": {"name": "score"},
                "sampler": {"type": "grid", "seed": 0},
                "pruner": {"type": "none"},
                # TensorBoard logs would load torch in every worker (~700 MB RSS instead of ~110)
                "logging": {"tensorboard": False},
                # A killed node's trials are failed and retried 10 s after its last heartbeat.
                "retry": {"heartbeat_interval": 2, "grace_period": 10, "max_retries": 2},
                "space": {"x": {"type": "float", "values": [float(i) for i in range(points)]}},
            }
        )
    )


def _hpo_run(spec: Path, url: str, workers: int, node: str, tmp: Path) -> list[str]:
    cmd = [sys.executable, "-m", "hpo", "run", str(spec), "--storage", url, "--device", "cpu"]
    return [*cmd, "--workers", str(workers), "--logs-dir", str(tmp / "logs" / node)]


def _node_env(lat_dir: Path, node: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "HPO_BENCH_LATENCY_DIR": str(lat_dir),
        "HPO_NODE_NAME": node,
    }


class Fleet:
    """The private server, PgBouncer in front of it, one namespace per node."""

    def __init__(self, nodes: int, pool_size: int) -> None:
        self.server = PrivatePostgres().init()
        self.server.start(max_connections=100)
        self.links = [Namespace(i).up() for i in range(nodes)]
        self.bouncer = PgBouncer(
            self.server, listen="*", default_pool_size=pool_size, max_client_conn=4000
        ).start()

    def pooled_url(self, link: Namespace) -> str:
        return self.bouncer.url.replace("127.0.0.1", link.host_ip)

    def close(self) -> None:
        for link in self.links:
            link.down()
        self.bouncer.stop()
        self.server.stop()
        self.server.remove()


def run_fleet(
    fleet: Fleet, via: str, nodes: int, workers: int, per_worker: int, cut: bool
) -> dict[str, object]:
    """``nodes`` x ``workers`` light workers on a grid of ``nodes * workers * per_worker``
    points, through PgBouncer (``via='pgbouncer'``) or ``hpo proxy`` (``via='proxy'``)."""
    tag = uuid.uuid4().hex[:6]
    name, budget = f"fleet-{via}-{tag}", nodes * workers * per_worker
    tmp = Path(tempfile.mkdtemp(prefix="hpo-fleet-"))
    tmp.chmod(0o755)
    spec, lat_dir = tmp / f"{name}.yaml", tmp / "latency"
    lat_dir.mkdir()
    _spec(spec, name, budget)
    links = fleet.links[:nodes]
    proxy = None
    if via == "proxy":
        port = _free_port()
        serve = [sys.executable, "-m", "hpo", "proxy", "--storage", fleet.server.url]
        proxy = subprocess.Popen(
            [*serve, "--host", "0.0.0.0", "--port", str(port)], stderr=subprocess.DEVNULL
        )
    sampler = Sampler(fleet.server.url, tag)
    sampler.start()
    started = time.perf_counter()
    storage = optuna.storages.RDBStorage(fleet.server.url)  # one pool for the polls
    procs = []
    for i, link in enumerate(links):
        node = f"n{i}-{tag}"
        url = f"grpc://{link.host_ip}:{port}" if proxy else fleet.pooled_url(link)
        cmd = ["ip", "netns", "exec", link.ns, *_hpo_run(spec, url, workers, node, tmp)]
        out = open(tmp / f"{node}.out", "w")  # noqa: SIM115 - closed with the run
        procs.append(subprocess.Popen(cmd, env=_node_env(lat_dir, node), stdout=out, stderr=out))
    victim = f"n{len(links) - 1}-{tag}"
    killed = _cut(storage, name, links[-1], victim, budget, workers, procs) if cut else None
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if proxy:
        proxy.terminate()
        proxy.wait()
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    result = _figures(trials, budget, lat_dir, sampler, killed)
    if result["left_running"]:
        # Every node finished before the killed node's heartbeats went stale: a node started
        # afterwards (an operator's rerun) finds them stale and runs their retries.
        result["left_running_when_nodes_exited"] = result["left_running"]
        time.sleep(12)
        link = links[0]
        sweep = ["ip", "netns", "exec", link.ns]
        sweep += _hpo_run(spec, fleet.pooled_url(link), 2, f"sweep-{tag}", tmp)
        done = subprocess.run(sweep, env=_node_env(lat_dir, f"sweep-{tag}"), capture_output=True)
        result["rerun_exit_code"] = done.returncode
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        result |= {
            k: v
            for k, v in _figures(trials, budget, lat_dir, sampler, killed).items()
            if k in ("complete", "exact_budget", "duplicates", "failed", "left_running", "cut")
        }
    outs = {p.name: p.read_text()[-300:] for p in tmp.glob("*.out")}
    return {
        "via": via,
        "nodes": nodes,
        "workers": nodes * workers,
        "wall_s": round(wall, 1),
        "exit_codes": codes,
        **result,
        **({"node_output_tails": outs} if any(c not in (0, -9) for c in codes) else {}),
    }


def _cut(
    storage: optuna.storages.RDBStorage,
    name: str,
    link: Namespace,
    node: str,
    budget: int,
    workers: int,
    procs: list[subprocess.Popen[bytes]],
) -> dict[str, object]:
    """Once a tenth of the budget is done, half of ``node``'s workers are up and one of them
    runs a trial: kill -9 of every process in its namespace. Its running trials and the time."""
    while any(p.poll() is None for p in procs):  # until every node has exited
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        except KeyError:  # not created yet
            continue
        done = sum(t.state == COMPLETE for t in trials)
        running = [
            t.number
            for t in trials
            if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("node") == node
        ]
        if done >= budget // 10 and running and len(link.pids()) > workers // 2:
            at = datetime.datetime.now()
            link.kill()
            return {"node": node, "at": at, "running": running}
    return {"node": node, "at": None, "running": []}


def _figures(
    trials: list[optuna.trial.FrozenTrial],
    budget: int,
    lat_dir: Path,
    sampler: Sampler,
    killed: dict[str, object] | None,
) -> dict[str, object]:
    complete = [t for t in trials if t.state == COMPLETE]
    runs = Counter(t.params["x"] for t in complete)
    failed = [t for t in trials if t.state == FAIL]
    # The killed node's trials that were failed as stale (those it ran when it died).
    victims = {t.number for t in failed if killed and t.user_attrs.get("node") == killed["node"]}
    lat = sorted(float(x) for f in lat_dir.glob("*.txt") for x in f.read_text().split())
    ends = sorted(t.datetime_complete for t in complete if t.datetime_complete)
    rss, pss = list(sampler.rss.values()), list(sampler.pss.values())
    out: dict[str, object] = {
        "budget": budget,
        "complete": len(complete),
        "exact_budget": len(complete) == budget and len(runs) == budget,
        "duplicates": sum(n - 1 for n in runs.values() if n > 1),
        "failed": len([t for t in failed if t.number not in victims]),
        "left_running": sum(t.state == optuna.trial.TrialState.RUNNING for t in trials),
        "trials_per_s": round((len(ends) - 1) / (ends[-1] - ends[0]).total_seconds(), 2)
        if len(ends) > 1
        else 0.0,
        "report_ms_p50": round(statistics.median(lat), 2) if lat else None,
        "report_ms_p99": round(lat[int(0.99 * (len(lat) - 1))], 2) if lat else None,
        "peak_server_connections": sampler.peak_connections,
        "peak_worker_processes": sampler.peak_workers,
        "worker_rss_mb_mean": round(statistics.mean(rss) / 1024, 1) if rss else None,
        "worker_pss_mb_mean": round(statistics.mean(pss) / 1024, 1) if pss else None,
    }
    if killed:
        at = killed["at"]
        stale = [t for t in failed if t.number in victims]
        retried = [t for t in complete if t.system_attrs.get("failed_trial") in victims]
        # From the kill to the last of its trials failed as stale (their retries follow).
        waits = [(t.datetime_complete - at).total_seconds() for t in stale if at]  # type: ignore[operator]
        out["cut"] = {
            "node": killed["node"],
            "running_at_kill": killed["running"],
            "failed_stale": len(stale),
            "retried_complete": len(retried),
            "detected_s": round(max(waits), 1) if waits else None,
        }
    return out
