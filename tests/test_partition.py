"""A link to PostgreSQL that dies without a reset: the node runs in a network namespace of
the test's own, its packets to the database dropped with iptables. The outage must be logged
within seconds, ridden out while it lasts less than ``retry.storage_outage``, and end the run
with exit 1 and one line when it lasts longer.

Only addresses of the namespace pair this test makes are used; both ends go with the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import pythonpath
from optuna.trial import TrialState
from pgserver import PrivatePostgres
from test_faults import SLOW_OBJECTIVE
from test_run import _wait_for, trials_of


def _netns_available() -> bool:
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("iptables")):
        return False
    name = f"hpo-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return made and PrivatePostgres.available()


NETNS = _netns_available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not NETNS and os.environ.get("HPO_REQUIRE_NETNS") != "1",
        reason="needs root, ip netns and iptables",
    ),
]


class Link:
    """A network namespace joined to this host by a veth pair (a /30 of the test's own)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns, self.host_if, self.ns_if = f"hpo-{tag}", f"hpo{tag}a", f"hpo{tag}b"
        octet = int(tag[:2], 16) % 250 + 1
        self.host_ip, self.ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
        self.network = f"10.231.{octet}.0/30"

    def _ip(self, *args: str, ns: bool = False) -> None:
        prefix = ["ip", "netns", "exec", self.ns] if ns else []
        subprocess.run([*prefix, *args], check=True, capture_output=True)

    def up(self) -> None:
        self._ip("ip", "netns", "add", self.ns)
        self._ip("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("ip", "link", "set", self.ns_if, "netns", self.ns)
        self._ip("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self._ip("ip", "link", "set", self.host_if, "up")
        self._ip("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=True)
        self._ip("ip", "link", "set", self.ns_if, "up", ns=True)
        self._ip("ip", "link", "set", "lo", "up", ns=True)

    def cut(self) -> None:
        """Drop every packet to the host: no reset, no ICMP, as when a link dies."""
        self._ip("iptables", "-A", "OUTPUT", "-d", self.host_ip, "-j", "DROP", ns=True)

    def restore(self) -> None:
        self._ip("iptables", "-F", "OUTPUT", ns=True)

    def down(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)

    def popen(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *cmd],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture
def link_and_pg() -> Iterator[tuple[Link, PrivatePostgres]]:
    link = Link()
    pg = PrivatePostgres(listen=f"127.0.0.1,{link.host_ip}").init()
    try:
        link.up()
        pg.trust(link.network)
        pg.start()
        yield link, pg
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            pg.stop()
        pg.remove()
        link.down()


def _run_in_namespace(write_spec, tmp_path: Path, link: Link, pg: PrivatePostgres, outage: float):
    (tmp_path / "slowobj.py").write_text(SLOW_OBJECTIVE)
    spec = write_spec(
        {
            "name": "partition",
            "objective": "slowobj:objective",
            "metric": {"name": "score"},
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"},
            "budget": {"n_trials": 4},
            "retry": {"heartbeat_interval": 1, "grace_period": 5, "storage_outage": outage},
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )
    url = pg.url.replace("127.0.0.1", link.host_ip)
    env = {**os.environ, "HPO_STORAGE": url, "PYTHONPATH": pythonpath(tmp_path)}
    cmd = [sys.executable, "-m", "hpo", "run", str(spec), "--workers", "1"]
    node = link.popen(cmd, tmp_path, env)
    _wait_for(lambda: _started(pg.url) >= 1, timeout=120)
    return node


def _started(url: str) -> int:
    try:
        return sum(bool(t.intermediate_values) for t in trials_of(url, "partition"))
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def _first_outage_log(logs: Path, deadline: float) -> float | None:
    """Seconds until a worker log says the storage is unreachable, or None by ``deadline``."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        for log in logs.glob("*.log"):
            if "storage unreachable" in log.read_text(errors="replace"):
                return time.monotonic() - start
        time.sleep(0.5)
    return None


#: A dropped link shows once TCP keepalive gives up: 5 s idle + 3 probes 2 s apart (connect.py).
PROBE_S = 11


def test_a_dropped_link_is_logged_within_15_s_and_ends_in_exit_1(
    write_spec, tmp_path: Path, link_and_pg
) -> None:
    """``retry.storage_outage`` bounds the outage, not each call: with 30 s the node exits
    within 30 s + one probe interval of the cut (it took ~72 s when each call had its own
    clock), plus a few seconds for the processes to stop on a loaded machine."""
    link, pg = link_and_pg
    node = _run_in_namespace(write_spec, tmp_path, link, pg, outage=30)
    link.cut()
    cut_at = time.monotonic()
    seen = _first_outage_log(tmp_path / "hpo-logs", deadline=15)
    out, _ = node.communicate(timeout=150)
    took = time.monotonic() - cut_at

    logs = {p.name: p.read_text() for p in (tmp_path / "hpo-logs").glob("*.log")}
    assert seen is not None, ("no 'storage unreachable' in the worker log within 15 s", out, logs)
    assert node.returncode == 1, out
    assert "storage unreachable" in out and "Traceback" not in out, out
    assert took < 30 + PROBE_S + 9, (took, out)


def test_a_link_back_before_the_outage_limit_loses_nothing(
    write_spec, tmp_path: Path, link_and_pg
) -> None:
    link, pg = link_and_pg
    node = _run_in_namespace(write_spec, tmp_path, link, pg, outage=120)
    link.cut()
    seen = _first_outage_log(tmp_path / "hpo-logs", deadline=15)
    link.restore()
    out, _ = node.communicate(timeout=240)

    assert seen is not None
    assert node.returncode == 0, out
    trials = trials_of(pg.url, "partition")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4, [(t.number, t.state, t.user_attrs) for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
