"""Deployment files, checked as far as a machine without a Docker engine, a cluster or a GPU can:
the compose file against the Compose Specification's JSON schema and for its wiring, the
Dockerfile and the Kubernetes manifests parsed, the Slurm script through ``bash -n``, and the
exact commands the worker, init and dashboard services, the Job and the sbatch script run,
executed here against the real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import optuna
import pytest
import sqlalchemy
import typer
import yaml
from optuna.trial import TrialState

from hpo.cli import app

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
#: The overlay whose workers take two GPUs per trial.
K8S_DDP = ROOT / "deploy" / "k8s-ddp"
SBATCH = ROOT / "deploy" / "slurm" / "hpo-array.sbatch"
#: The Compose Specification's schema, as vendored by the npm package dclint 3.1.0 (see README).
COMPOSE_SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
#: The one variable that holds the Postgres password, in .env or the environment.
PASSWORD_VAR = "POSTGRES_PASSWORD"
TEST_PASSWORD = "pw-" + uuid.uuid4().hex


# --- helpers: .env files, compose interpolation, profiles ------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


_VAR = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^{}]*)\}|(?P<named>[A-Za-z_]\w*))")
_EXPR = re.compile(r"(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Substitute variables in every string of a loaded compose file, as Compose does:
    ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``,
    ``${VAR?error}``, ``${VAR:+alt}`` (an unset ``${VAR}`` becomes an empty string)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m["dollar"]:
            return "$"
        expr = _EXPR.fullmatch(m["braced"] if m["braced"] is not None else m["named"])
        assert expr, f"unsupported interpolation {m[0]!r}"
        current = env.get(expr["name"])
        op, arg = expr["op"], expr["arg"]
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op is None:
            return current or ""
        if op.endswith("-"):
            return arg if missing else str(current)
        if op.endswith("+"):
            return "" if missing else arg
        if missing:
            raise ValueError(f"{expr['name']}: {arg}")
        return str(current)

    return _VAR.sub(sub, value)


def compose_env(**overrides: str) -> dict[str, str]:
    """What Compose reads on a machine set up from .env.example, plus the password."""
    return {**read_env_file(ROOT / ".env.example"), PASSWORD_VAR: TEST_PASSWORD, **overrides}


def compose(**overrides: str) -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), compose_env(**overrides))


def active(services: dict[str, Any], profiles: set[str]) -> set[str]:
    """The services ``docker compose --profile P ...`` starts."""
    return {
        name
        for name, s in services.items()
        if not s.get("profiles") or profiles & set(s["profiles"])
    }


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def entrypoint() -> list[str]:
    [value] = [v for k, v in dockerfile() if k == "ENTRYPOINT"]
    return json.loads(value)


def executable(argv: list[str]) -> list[str]:
    """``argv`` with ``hpo`` (the image's console script) resolved to this environment's."""
    script = Path(sys.executable).with_name("hpo")
    return [str(script) if argv[0] == "hpo" else argv[0], *argv[1:]]


def hpo_run_args_are_valid(args: list[str], cwd: Path = ROOT) -> None:
    """``hpo run ...`` parses with the real CLI, and its study file passes ``hpo validate``."""
    assert args[0] == "run", args
    command = typer.main.get_command(app)
    run = command.commands["run"]  # type: ignore[attr-defined]
    ctx = run.make_context("run", list(args[1:]))  # raises on an unknown or malformed option
    spec = cwd / ctx.params["spec_path"]
    proc = subprocess.run(
        executable(["hpo", "validate", str(spec)]), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def k8s_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def k8s(kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [
        d
        for _, d in k8s_docs()
        if d["kind"] == kind and name in (None, d.get("metadata", {}).get("name"))
    ]
    return doc


def tiny_study(tmp_path: Path, name: str, n_trials: int = 2) -> Path:
    """The quickstart study under a fresh name, with a budget of ``n_trials`` one-epoch trials."""
    spec = yaml.safe_load((ROOT / "studies" / "lr_batch.yaml").read_text())
    spec.update(name=name, budget={"n_trials": n_trials})
    spec["train"]["epochs"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without storage settings, ``hpo`` on PATH, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_STORAGE", "PGPASSWORD")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for doc in (yaml.safe_load(COMPOSE.read_text()), compose()):  # as written, and interpolated
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, errors


def test_schema_catches_a_broken_compose_file() -> None:
    """The vendored schema is strict enough to matter: a misspelt key fails validation."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    broken = compose()
    broken["services"]["worker"]["depends_on"]["postgres"]["condition"] = "healthy"
    broken["services"]["dashboard"]["portz"] = ["8080:8080"]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    assert len(errors) == 2


def test_profiles_split_head_gpu_nodes_and_laptop() -> None:
    services = compose()["services"]
    head = {"postgres", "pgbouncer", "storage-init", "dashboard"}
    assert active(services, {"head"}) == head
    assert active(services, {"worker"}) == {"worker"}
    assert active(services, {"head", "worker"}) == head | {"worker"}
    assert active(services, {"cpu"}) == head | {"worker-cpu"}
    assert active(services, set()) == set(), "nothing starts without a profile"
    for profiles in ({"head"}, {"worker"}, {"head", "worker"}, {"cpu"}):
        running = active(services, profiles)
        for name in running:
            for dep, cond in services[name].get("depends_on", {}).items():
                assert dep in running or cond.get("required") is False, (profiles, name, dep)


def test_postgres_is_healthchecked_persistent_and_takes_its_password_from_env() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    pg = compose()["services"]["postgres"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    volume = pg["volumes"][0].split(":")[0]
    assert volume in raw["volumes"], "a named volume, not a bind mount"
    assert re.fullmatch(
        r"\$\{POSTGRES_PASSWORD:\?[^}]+\}",
        raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"],
    )
    # Compose refuses to start with the password unset, or empty as .env.example ships it.
    unset = {k: v for k, v in compose_env().items() if k != PASSWORD_VAR}
    for env in (unset, read_env_file(ROOT / ".env.example")):
        with pytest.raises(ValueError, match=PASSWORD_VAR):
            interpolate(yaml.safe_load(COMPOSE.read_text()), env)


@pytest.mark.parametrize("name", ["worker", "worker-cpu"])
def test_workers_reach_postgres_through_pgbouncer_in_transaction_mode(name: str) -> None:
    """The large-fleet path of the README: workers are PgBouncer's clients; the dashboard and
    the schema step keep their direct connection."""
    services = compose()["services"]
    bouncer = services["pgbouncer"]
    env = bouncer["environment"]
    assert env["POOL_MODE"] == "transaction" and env["DB_HOST"] == "postgres"
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    pool = int(env["DEFAULT_POOL_SIZE"])
    max_connections = int(services["postgres"]["command"][-1].split("=")[1])
    assert pool + 15 + 10 <= max_connections, "the pool, the dashboard and a margin fit"
    storage = services[name]["environment"]["HPO_STORAGE"]
    assert storage == f"postgresql+psycopg2://hpo@pgbouncer:{env['LISTEN_PORT']}/hpo"
    assert services[name]["depends_on"]["pgbouncer"]["required"] is False
    assert "@postgres:5432/" in services["dashboard"]["command"][0]


@pytest.mark.parametrize("name", ["worker", "worker-cpu"])
def test_workers_wait_for_a_healthy_postgres_and_an_initialised_schema(name: str) -> None:
    worker = compose()["services"][name]
    assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["depends_on"]["storage-init"]["condition"] == "service_completed_successfully"
    assert worker["environment"]["PGPASSWORD"] == TEST_PASSWORD
    assert worker["stop_grace_period"], "SIGTERM needs time to finish the batch"


def test_gpu_worker_reserves_all_gpus_and_cpu_worker_none() -> None:
    services = compose()["services"]
    [device] = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    assert "deploy" not in services["worker-cpu"]
    assert services["worker-cpu"]["command"][-2:] == ["--device", "cpu"]


def test_dashboard_is_published_on_loopback_after_the_schema_exists() -> None:
    services = compose()["services"]
    dash = services["dashboard"]
    [port] = dash["ports"]
    host_ip, host_port, container_port = port.split(":")
    assert host_ip == "127.0.0.1"
    assert dash["command"][dash["command"].index("--port") + 1] == container_port
    assert dash["depends_on"]["storage-init"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "worker", "worker-cpu", "storage-init"):
        for published in services[name].get("ports", []):
            assert published.startswith("127.0.0.1:"), (name, published)


@pytest.mark.parametrize("name", ["worker", "worker-cpu"])
def test_default_worker_commands_are_valid_runs_of_shipped_studies(name: str) -> None:
    hpo_run_args_are_valid(compose()["services"][name]["command"])


# --- no password anywhere --------------------------------------------------------------------

DEPLOY_FILES = [
    COMPOSE,
    ROOT / ".env.example",
    DOCKERFILE,
    SBATCH,
    *sorted(p for p in K8S.iterdir() if p.name != "hpo.env"),  # hpo.env: local, git ignores it
]


def test_no_password_literal_in_any_deployment_file() -> None:
    url_with_password = re.compile(r"://[^/\s:@]+:([^@\s/]+)@")
    for path in DEPLOY_FILES:
        text = path.read_text()
        for m in url_with_password.finditer(text):
            assert m[1].startswith("${"), f"{path.name}: password in a URL"
    for example in (ROOT / ".env.example", K8S / "hpo.env.example"):
        assert read_env_file(example)[PASSWORD_VAR] == "", example
    raw = yaml.safe_load(COMPOSE.read_text())
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", value), (name, key)
    for path, doc in k8s_docs():
        for spec in _pod_specs(doc):
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for var in container.get("env", []):
                    if "PASSWORD" in var["name"]:
                        assert "secretKeyRef" in var["valueFrom"], (path.name, var)


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_on_cuda_pytorch_installs_hpo_and_runs_as_non_root() -> None:
    steps = dockerfile()
    keywords = [k for k, _ in steps]
    base = dict(v.split("=", 1) for k, v in steps if k == "ARG" and "=" in v)["BASE_IMAGE"]
    assert base.startswith("pytorch/pytorch:") and "cuda" in base and "cudnn" in base
    assert ("FROM", "${BASE_IMAGE}") in steps

    def index(keyword: str, needle: str) -> int:
        return next(i for i, (k, v) in enumerate(steps) if k == keyword and needle in v)

    deps = index("RUN", "pip install -r")
    assert index("COPY", "pyproject.toml") < deps < index("COPY", "hpo ./hpo")
    assert index("COPY", "hpo ./hpo") < index("RUN", "pip install --no-deps .")
    assert "tomllib" in steps[deps][1], "dependencies come from pyproject.toml"
    users = [v for k, v in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > index("RUN", "useradd")
    assert max(i for i, k in enumerate(keywords) if k == "USER") < keywords.index("ENTRYPOINT")
    assert entrypoint() == ["hpo"]


def _glob(path: str, pattern: str) -> bool:
    """Go's filepath.Match as Docker extends it: ``*`` and ``?`` stop at ``/``, ``**`` does not."""
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.fullmatch(regex, path) is not None


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a pattern matches a path or one of its parent folders; the last matching
    pattern wins, and ``!`` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.removeprefix("!").rstrip("/")
        if any(_glob(c, pat) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_image_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".env",
        ".venv/bin/python",
        ".git/HEAD",
        "hpo.db",
        "deploy/k8s/hpo.env",
        "data/cifar-10-batches-py/data_batch_1",
        "hpo-logs/x-w0.log",
        "tests/conftest.py",
        "hpo/__pycache__/cli.cpython-311.pyc",
    ):
        assert _dockerignored(path, patterns), path
    for k, v in dockerfile():
        if k == "COPY":
            for src in v.split()[:-1]:
                assert (ROOT / src).exists(), src
                assert not _dockerignored(src, patterns), src
    assert not _dockerignored("hpo/cli.py", patterns)


# --- Kubernetes ------------------------------------------------------------------------------


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    template = doc.get("spec", {}).get("template")
    return [template["spec"]] if template else []


def test_k8s_manifests_parse_and_kustomization_lists_them_all() -> None:
    docs = list(k8s_docs())
    kinds = {d["kind"] for _, d in docs}
    assert {"Namespace", "Service", "StatefulSet", "Deployment", "Job", "Kustomization"} <= kinds
    for path, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], path
    kustomization = k8s("Kustomization")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_k8s_secret_holds_the_storage_url_and_every_pod_reads_it() -> None:
    [generator] = k8s("Kustomization")["secretGenerator"]
    [env_file] = generator["envs"]
    keys = read_env_file(K8S / f"{env_file}.example")
    assert set(keys) == {"HPO_STORAGE", PASSWORD_VAR}
    assert keys["HPO_STORAGE"].startswith("postgresql+psycopg2://")
    refs = set()
    for _, doc in k8s_docs():
        for spec in _pod_specs(doc):
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                for var in container.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == generator["name"] and ref["key"] in keys, ref
                        refs.add((container["name"], var["name"]))
    assert {
        ("worker", "HPO_STORAGE"),
        ("worker", "PGPASSWORD"),
        ("dashboard", "HPO_STORAGE"),
        ("storage-init", "PGPASSWORD"),
        ("postgres", PASSWORD_VAR),
    } <= refs


def test_k8s_postgres_and_dashboard_are_wired() -> None:
    pg = k8s("StatefulSet")
    [container] = pg["spec"]["template"]["spec"]["containers"]
    assert "pg_isready" in container["readinessProbe"]["exec"]["command"]
    assert pg["spec"]["volumeClaimTemplates"]
    services = {d["metadata"]["name"]: d for _, d in k8s_docs() if d["kind"] == "Service"}
    assert pg["spec"]["serviceName"] in services
    dash = k8s("Deployment", "hpo-dashboard")
    pod = dash["spec"]["template"]
    [svc] = [s for s in services.values() if s["spec"]["selector"] == pod["metadata"]["labels"]]
    assert svc["spec"]["type"] == "ClusterIP", "reached through kubectl port-forward only"
    [init] = pod["spec"]["initContainers"]
    compose_init = compose()["services"]["storage-init"]["entrypoint"]
    assert init["command"] == compose_init, "the same schema step as in compose"


def test_k8s_pods_reach_postgres_through_pgbouncer_in_transaction_mode() -> None:
    bouncer = k8s("Deployment", "hpo-pgbouncer")
    [container] = bouncer["spec"]["template"]["spec"]["containers"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["POOL_MODE"] == "transaction"
    services = {d["metadata"]["name"]: d for _, d in k8s_docs() if d["kind"] == "Service"}
    assert env["DB_HOST"] in services, "PgBouncer reaches the postgres Service"
    [svc] = [
        s
        for s in services.values()
        if s["spec"]["selector"] == bouncer["spec"]["template"]["metadata"]["labels"]
    ]
    port = svc["spec"]["ports"][0]["port"]
    assert str(port) == env["LISTEN_PORT"]
    [generator] = k8s("Kustomization")["secretGenerator"]
    storage = read_env_file(K8S / f"{generator['envs'][0]}.example")["HPO_STORAGE"]
    assert storage == f"postgresql+psycopg2://hpo@{svc['metadata']['name']}:{port}/hpo"
    [pg] = k8s("StatefulSet")["spec"]["template"]["spec"]["containers"]
    max_connections = int(pg["args"][-1].split("=")[1])
    assert int(env["DEFAULT_POOL_SIZE"]) + 15 + 10 <= max_connections


def test_k8s_job_is_indexed_one_gpu_per_pod_and_preemption_is_retried() -> None:
    job = k8s("Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] >= 1
    assert spec["backoffLimitPerIndex"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] >= 60
    [worker] = pod["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    rules = spec["podFailurePolicy"]["rules"]
    by_code = {
        code: r["action"]
        for r in rules
        if "onExitCodes" in r
        for code in r["onExitCodes"]["values"]
    }
    assert by_code == {2: "FailJob", 143: "Ignore"}
    assert any(
        r["action"] == "Ignore" and {"type": "DisruptionTarget"} in r.get("onPodConditions", [])
        for r in rules
    )
    hpo_run_args_are_valid(worker["args"])


def test_k8s_job_keeps_checkpoints_on_a_shared_volume() -> None:
    """A replaced pod (preemption, a retry) must find its trial's checkpoint on any node."""
    claim = k8s("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = k8s("Job")["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volume = volumes[mounts[env["HPO_ARTIFACTS"]]]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def _replaced(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` after a JSON patch (RFC 6902) of ``replace`` operations, each of an existing path."""
    doc = json.loads(json.dumps(doc))
    for op in ops:
        assert op["op"] == "replace", op
        parts = op["path"][1:].split("/")
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in parts]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        assert key in node if isinstance(node, dict) else key < len(node), op["path"]
        node[key] = op["value"]
    return doc


def test_k8s_ddp_overlay_gives_each_pod_the_gpus_of_one_trial() -> None:
    """kubectl apply -k deploy/k8s-ddp: the base with the Job patched; every pod's GPU limit is
    its study's gpus_per_trial, and its `hpo run` is valid."""
    overlay = yaml.safe_load((K8S_DDP / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../k8s"]
    [patch] = overlay["patches"]
    job = k8s("Job")
    assert patch["target"] == {"kind": "Job", "name": job["metadata"]["name"]}
    spec = _replaced(job, yaml.safe_load(patch["patch"]))["spec"]
    assert spec["parallelism"] == spec["completions"] >= 1
    [worker] = spec["template"]["spec"]["containers"]
    hpo_run_args_are_valid(worker["args"])
    study = yaml.safe_load((ROOT / worker["args"][1]).read_text())
    per_trial = study["resources"]["gpus_per_trial"]
    assert per_trial > 1 and worker["resources"]["limits"]["nvidia.com/gpu"] == per_trial


def _job_wrapper() -> list[str]:
    """The Job container's command: ``sh -c SCRIPT hpo`` (the args follow)."""
    [worker] = k8s("Job")["spec"]["template"]["spec"]["containers"]
    return worker["command"]


def test_k8s_wrapper_passes_hpo_exit_codes_through() -> None:
    ok = subprocess.run(
        _job_wrapper() + ["validate", "studies/lr_batch.yaml"],
        cwd=ROOT,
        env=clean_env({}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        _job_wrapper() + ["validate", "studies/no-such-study.yaml"],
        cwd=ROOT,
        env=clean_env({}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2, bad.stderr


@pytest.mark.slow
def test_k8s_wrapper_turns_preemption_into_a_retryable_exit(tmp_path: Path) -> None:
    """SIGTERM to the pod's PID 1: hpo hands the trial back, exits 0, and the wrapper exits 143
    so that the Job replaces the pod (podFailurePolicy Ignore) instead of completing its index."""
    spec = tiny_study(tmp_path, "preempted", n_trials=4)
    data = yaml.safe_load(spec.read_text())
    data["train"]["epochs"] = 50
    spec.write_text(yaml.safe_dump(data))
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = subprocess.Popen(
        _job_wrapper() + ["run", str(spec), "--workers", "1"],
        cwd=tmp_path,
        env=clean_env({"HPO_STORAGE": url}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _trials(url, "preempted", TrialState.RUNNING):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, out
    assert not _trials(url, "preempted", TrialState.RUNNING)
    [interrupted] = _trials(url, "preempted", TrialState.FAIL)
    assert interrupted.user_attrs["fail_reason"].startswith("interrupted")
    assert len(_trials(url, "preempted", TrialState.WAITING)) == 4, "the trial is retried"


def _trials(url: str, name: str, state: TrialState) -> list[optuna.trial.FrozenTrial]:
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return []
    return study.get_trials(deepcopy=False, states=(state,))


# --- Slurm -----------------------------------------------------------------------------------


def test_sbatch_script_is_valid_bash_with_requeue_on_preemption() -> None:
    proc = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = SBATCH.read_text()
    directives = re.findall(r"^#SBATCH\s+(\S+)", text, re.M)
    assert "--requeue" in directives
    assert any(re.fullmatch(r"--array=\d+-\d+", d) for d in directives)
    assert "--gres=gpu:1" in directives, "one task per GPU"
    assert any(re.fullmatch(r"--signal=B:USR1@\d+", d) for d in directives)
    assert re.search(r"^trap .* TERM$", text, re.M) and re.search(r"^trap .* USR1$", text, re.M)
    assert "scontrol requeue" in text
    assert "--gres=gpu:2" in text and "cifar10_resnet18_ddp.yaml" in text, "N GPUs per trial"


# --- real runs against PostgreSQL ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_compose_worker_command_completes_a_study_on_postgres(
    tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    """The GPU worker service's exact command, with the environment compose gives it, on this
    machine without a GPU (hpo falls back to CPU workers)."""
    spec = tiny_study(tmp_path, unique_name)
    worker = compose(HPO_STORAGE=postgres_url, HPO_STUDY=str(spec))["services"]["worker"]
    proc = subprocess.run(
        executable(entrypoint() + worker["command"]),
        cwd=tmp_path,
        env=clean_env(worker["environment"]),
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert TEST_PASSWORD not in out
    trials = optuna.load_study(study_name=unique_name, storage=postgres_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """An empty database of its own (no Optuna tables) on the test server, dropped afterwards."""
    name = f"hpo_deploy_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        yield sqlalchemy.engine.make_url(postgres_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _start_dashboard(url: str, port: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    dash = compose(HPO_STORAGE=url, DASHBOARD_PORT=str(port))["services"]["dashboard"]
    proc = subprocess.Popen(
        executable(dash["entrypoint"] + dash["command"]),
        env=clean_env(dash["environment"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, dash


@pytest.mark.slow
@pytest.mark.postgres
def test_dashboard_starts_on_a_fresh_database_once_storage_init_ran(fresh_database: str) -> None:
    # Without the init step, optuna-dashboard gives up on a database with no Optuna tables.
    proc, _ = _start_dashboard(fresh_database, free_port())
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        proc.kill()

    init = compose(HPO_STORAGE=fresh_database)["services"]["storage-init"]
    done = subprocess.run(
        init["entrypoint"],
        env=clean_env(init["environment"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    port = free_port()
    proc, _ = _start_dashboard(fresh_database, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer"
                time.sleep(0.5)
        assert body["study_summaries"] == []
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert TEST_PASSWORD not in out


@pytest.mark.slow
@pytest.mark.postgres
def test_sbatch_script_joins_the_study_and_exits_0(
    tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    """The array task's script itself, run by bash as Slurm would (without Slurm)."""
    spec = tiny_study(tmp_path, unique_name)
    env = clean_env(
        {
            "HPO_STORAGE": postgres_url,
            "PGPASSWORD": TEST_PASSWORD,
            "SLURM_SUBMIT_DIR": str(tmp_path),
            "SLURM_ARRAY_JOB_ID": "4242",
            "SLURM_ARRAY_TASK_ID": "3",
            "SLURM_JOB_ID": "4245",
        }
    )
    proc = subprocess.run(
        ["bash", str(SBATCH), str(spec)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((tmp_path / "hpo-logs" / "4242_3").glob("*-w0.log")), "logs per array task"
    trials = optuna.load_study(study_name=unique_name, storage=postgres_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_sbatch_script_runs_a_study_of_two_processes_per_trial(tmp_path: Path) -> None:
    """The script with a ``gpus_per_trial: 2`` study on a task without GPUs: one group of two
    CPU processes (gloo) runs the trials."""
    spec = yaml.safe_load((ROOT / "studies" / "lr_batch_ddp.yaml").read_text())
    spec.update(budget={"n_trials": 2}, sampler={"type": "random", "seed": 0})
    spec["train"]["epochs"] = 1
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    env = clean_env(
        {
            "HPO_STORAGE": url,
            "CUDA_VISIBLE_DEVICES": "",
            "SLURM_SUBMIT_DIR": str(tmp_path),
            "SLURM_ARRAY_JOB_ID": "77",
            "SLURM_ARRAY_TASK_ID": "0",
        }
    )
    proc = subprocess.run(
        ["bash", str(SBATCH), str(path)], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = optuna.load_study(study_name="lr_batch_ddp", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(len(t.user_attrs["group_pids"]) == 2 for t in trials)
