"""Deployment and operations configs, validated offline by the tools that own each format.

Docker cannot run here, so each file is checked by its own linter or validator instead:
hadolint (Dockerfile), check-jsonschema's compose-spec (docker-compose.yml),
kubernetes-validate (deploy/k8s), promtool (Prometheus rules and config) and nginx -t
(the load balancer). A missing tool fails the test with how to install it:
`bash .ci/deploy-tools.sh .venv`. The rest checks that the configs agree with the app:
the commands, port, health paths, environment variable names and metric names.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from app.shards import SESSION_SETTINGS, pgbouncer_connect_query
from tests.support import ServerProcess, answers_ok, auth, free_port, wait_until_blocking

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX_CONF = DEPLOY / "nginx.conf"
K8S = DEPLOY / "k8s"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"

# kubernetes-validate ships schemas for 1.25 .. 1.37 (1.37.0 release); validate against a
# version that current managed clusters run.
K8S_VERSION = "1.32.0"
INSTALL_HINT = "install the deploy tools: `bash .ci/deploy-tools.sh .venv` (as root)"

SERVE = ["modex", "serve", "--host", "0.0.0.0", "--port", "4000"]
MIGRATE = ["modex", "migrate"]
REQUIRED_ENV = ("DATABASE_URL", "SHARD_URLS", "REDIS_URL", "MODEX_JWT_SECRET")

# what the app exports (app/ops/metrics.py, app/realtime/metrics.py) and the exporters'
APP_METRICS = {
    "http_request_duration_seconds",
    "db_query_duration_seconds",
    "bookings_total",
    "holds_total",
    "ws_connections",
    "fanout_lag_seconds",
    "outbox_backlog",
    "circuit_breaker_open",
    "redis_listener_up",
    "seat_requests_alone_total",
}
EXTERNAL_METRICS = {
    "up",
    "pg_stat_activity_count",
    "pg_settings_max_connections",
    "redis_evicted_keys_total",
}


# --- helpers ---------------------------------------------------------------------------


def tool(name: str) -> str:
    """Path of a command-line tool: the test venv first, then PATH, then the sbin dirs."""
    candidates = [Path(sys.executable).parent / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    candidates += [Path(d) / name for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin")]
    for path in candidates:
        if path.is_file() and path.stat().st_mode & 0o111:
            return str(path)
    pytest.fail(f"`{name}` is not installed; {INSTALL_HINT}", pytrace=False)


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a validator; fail with its whole output unless it exits 0."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (
        f"`{' '.join(cmd)}` exited {proc.returncode}\n--- stdout\n{proc.stdout}"
        f"\n--- stderr\n{proc.stderr}"
    )
    return proc


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def interpolate(value: str) -> str:
    """Compose's `${NAME:-default}` with the defaults (what runs with no .env)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def app_source() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "app").rglob("*.py")))


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)  # type: ignore[no-any-return]


def app_services(spec: dict[str, Any], profile: str | None = None) -> dict[str, dict[str, Any]]:
    """The `modex serve` services that run with `profile` (None: with no profile given)."""
    return {
        name: svc
        for name, svc in spec["services"].items()
        if svc.get("command", [None, None])[:2] == ["modex", "serve"]
        and (profile in svc.get("profiles", []) if profile else "profiles" not in svc)
    }


def healthcheck_text(svc: dict[str, Any]) -> str:
    test = svc["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def k8s_docs() -> dict[str, list[dict[str, Any]]]:
    return {
        p.name: load_all_yaml(p)
        for p in sorted(K8S.glob("*.yaml"))
        if p.name != "kustomization.yaml"
    }


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for docs in k8s_docs().values() for doc in docs if doc["kind"] == kind]


def nginx_upstream_servers(text: str) -> list[str]:
    block = re.search(r"upstream\s+modex_app\s*\{(.*?)\}", text, re.S)
    assert block, "deploy/nginx.conf has no `upstream modex_app { ... }`"
    return re.findall(r"^\s*server\s+(\S+?)(?:\s|;)", block.group(1), re.M)


def nginx_location(text: str, head: str) -> str:
    match = re.search(re.escape(head) + r"\s*\{(.*?)\n\s*\}", text, re.S)
    assert match, f"deploy/nginx.conf has no `{head} {{ ... }}`"
    return match.group(1)


# --- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    run([tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])


def test_dockerfile_runs_the_app_as_documented() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "the Dockerfile should be multi-stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M) or all(
        f.startswith("python:3.11-slim") for f in froms
    )
    assert "pip install --no-cache-dir ." in text
    assert re.search(r"^WORKDIR /app$", text, re.M)
    assert re.search(r"^COPY sql \./sql$", text, re.M)
    assert re.search(r"^COPY static \./static$", text, re.M)
    assert re.search(r"^EXPOSE 4000$", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0"), "must run as a non-root user"
    health = re.search(r"^HEALTHCHECK .*?\n(?:.*\\\n)*.*$", text, re.M)
    assert health and "urllib" in health.group(0) and ":4000/health" in health.group(0)
    cmd = re.findall(r"^CMD\s+(\[.*\])$", text, re.M)
    assert cmd and yaml.safe_load(cmd[-1]) == SERVE


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "app", "sql", "static"):
        assert needed not in patterns and f"{needed}/" not in patterns, needed
    for unwanted in (".git", ".venv"):
        assert unwanted in patterns, unwanted


# --- docker-compose.yml ----------------------------------------------------------------


def test_compose_matches_the_compose_spec() -> None:
    run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])


def test_compose_app_services_agree_with_the_app() -> None:
    spec = compose()
    services = spec["services"]
    apps = app_services(spec)
    assert sorted(apps) == ["app1", "app2", "app3"]
    source = app_source()
    for name, svc in apps.items():
        assert svc["command"] == SERVE, name
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert [str(p) for p in svc["expose"]] == ["4000"], name
        health = healthcheck_text(svc)
        assert "http://127.0.0.1:4000/health" in health, name
        env = {k: interpolate(str(v)) for k, v in svc["environment"].items()}
        for key in REQUIRED_ENV:
            assert env.get(key), f"{name} lacks {key}"
        for key in env:
            # every variable set must be one the app reads (catches typos and renames)
            assert f'"{key}"' in source, f"{name} sets {key}, which nothing in app/ reads"
        assert env.get("MODEX_DEMO", "0") in ("0", "1")
        # behind nginx, without it every client shares nginx's address for per-IP limits
        assert env.get("MODEX_TRUSTED_PROXIES"), f"{name} does not trust nginx's X-Forwarded-For"
        # each URL names a service of this file
        shards = env["SHARD_URLS"].split(",")
        assert shards[0] == env["DATABASE_URL"], "the metadata database is shard 0"
        assert len(shards) == 2
        for url in [env["DATABASE_URL"], *shards, env["REDIS_URL"]]:
            parts = urlsplit(url)
            assert parts.hostname in services, f"{name}: {url} names no compose service"
        assert {urlsplit(u).hostname for u in shards} == {"postgres-meta", "postgres-shard1"}
        assert urlsplit(env["REDIS_URL"]).scheme == "redis"
        deps = svc["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        for dep in ("postgres-meta", "postgres-shard1", "redis"):
            assert deps[dep]["condition"] == "service_healthy", (name, dep)


def test_compose_migrate_runs_once_before_the_apps() -> None:
    spec = compose()
    migrate = spec["services"]["migrate"]
    app_env = next(iter(app_services(spec).values()))["environment"]
    assert migrate["command"] == MIGRATE
    assert migrate["restart"] == "no"
    assert migrate["build"] == next(iter(app_services(spec).values()))["build"]
    for key in ("DATABASE_URL", "SHARD_URLS"):
        assert migrate["environment"][key] == app_env[key], key
    for dep in ("postgres-meta", "postgres-shard1"):
        assert migrate["depends_on"][dep]["condition"] == "service_healthy"


def test_compose_every_long_running_service_has_a_healthcheck() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        if name.endswith("migrate"):
            continue  # one-shot: exits before a healthcheck would mean anything
        assert "healthcheck" in svc and not svc["healthcheck"].get("disable"), name
        assert svc["healthcheck"]["test"], name
    assert "pg_isready" in healthcheck_text(services["postgres-meta"])
    assert "pg_isready" in healthcheck_text(services["postgres-shard1"])
    assert "ping" in healthcheck_text(services["redis"])
    assert "/nginx-health" in healthcheck_text(services["nginx"])
    assert "/nginx-health" in NGINX_CONF.read_text()


def test_compose_nginx_balances_every_app_instance() -> None:
    spec = compose()
    nginx = spec["services"]["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    apps = app_services(spec)
    for name in apps:
        assert nginx["depends_on"][name]["condition"] == "service_healthy"
    servers = nginx_upstream_servers(NGINX_CONF.read_text())
    assert sorted(servers) == sorted(f"{name}:4000" for name in apps)


def test_prometheus_scrapes_every_compose_app_instance() -> None:
    apps = app_services(compose())
    config = load_yaml(PROMETHEUS)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "modex")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert sorted(targets) == sorted(f"{name}:4000" for name in apps)


def test_compose_ha_profile_is_the_local_cluster_topology() -> None:
    spec = compose()
    services = spec["services"]
    ha = {name for name, svc in services.items() if "ha" in svc.get("profiles", [])}
    apps = app_services(spec, "ha")
    assert sorted(apps) == ["ha-app1", "ha-app2", "ha-app3"]
    # its own network, where the instances answer to deploy/nginx.conf's upstream names
    aliases = sorted(a for svc in apps.values() for a in svc["networks"]["ha"]["aliases"])
    assert sorted(nginx_upstream_servers(NGINX_CONF.read_text())) == [f"{a}:4000" for a in aliases]
    for name in ha:
        networks = services[name]["networks"]
        assert list(networks) == ["ha"], name
        for dep in services[name].get("depends_on", []):
            assert dep in ha, f"{name} depends on {dep}, outside the profile"
    # a Patroni-managed primary and standby per database, with their failover settings
    scopes: dict[str, list[str]] = {}
    for name in ha:
        env = services[name].get("environment", {})
        if "SCOPE" in env:
            scopes.setdefault(env["SCOPE"], []).append(name)
            dcs = yaml.safe_load(env["SPILO_CONFIGURATION"])["bootstrap"]["dcs"]
            assert dcs["synchronous_mode"] is True and dcs["failsafe_mode"] is True
            assert dcs["postgresql"]["parameters"]["synchronous_commit"] == "on"
            assert "/health" in healthcheck_text(services[name])
    assert sorted(len(nodes) for nodes in scopes.values()) == [2, 2]
    # HAProxy: a primary port per database (Patroni's /primary), a standby port (/replica)
    haproxy = (DEPLOY / "ha" / "haproxy.cfg").read_text()
    blocks = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^listen (\w+)\n((?:    .*\n?)+)", haproxy, re.M)
    }
    ports: dict[str, str] = {}
    for block in blocks.values():
        port = re.search(r"bind :(\d+)", block)
        check = re.search(r"option httpchk GET (/\w+)", block)
        assert port and check, block
        ports[port.group(1)] = check.group(1)
        nodes = re.findall(r"server \S+ (\S+):5432 check port 8008", block)
        assert nodes and {n for n in nodes} in [set(v) for v in scopes.values()], block
    assert sorted(ports.items()) == [
        ("5000", "/primary"),
        ("5001", "/primary"),
        ("5100", "/replica"),
        ("5101", "/replica"),
    ]
    # PgBouncer: one database per primary port, the app's session settings on each
    bouncer = (DEPLOY / "ha" / "pgbouncer.ini").read_text()
    entries = dict(re.findall(r"^(\w+) = host=haproxy port=(\d+) .*$", bouncer, re.M))
    assert sorted(entries.values()) == ["5000", "5001"]
    assert bouncer.count(f"connect_query='{pgbouncer_connect_query()}'") == 2
    assert "pool_mode = transaction" in bouncer
    for name, svc in apps.items():
        env = {k: interpolate(str(v)) for k, v in svc["environment"].items()}
        assert env["MODEX_PGBOUNCER"] == "1", name
        shards = env["SHARD_URLS"].split(",")
        assert shards[0] == env["DATABASE_URL"]
        assert [urlsplit(u).path.strip("/") for u in shards] == sorted(entries)
        assert {urlsplit(u).hostname for u in shards} == {"pgbouncer"}
        reads = env["SHARD_READ_URLS"].split(",")
        assert [(urlsplit(u).hostname, str(urlsplit(u).port)) for u in reads] == [
            ("haproxy", "5100"),
            ("haproxy", "5101"),
        ]
        assert urlsplit(env["REDIS_URL"]).hostname in ha
        source = app_source()
        for key in env:
            assert f'"{key}"' in source, f"{name} sets {key}, which nothing in app/ reads"


# --- nginx -----------------------------------------------------------------------------


def offline_nginx_copy(tmp_path: Path, extra: str = "") -> Path:
    """deploy/nginx.conf with app1..3 on loopback (nginx -t resolves upstream hosts)."""
    text, count = re.subn(
        r"(^\s*server\s+)app(\d+):4000", r"\g<1>127.0.0.\2:4000", NGINX_CONF.read_text(), flags=re.M
    )
    assert count == 3, "expected the three app upstream servers in deploy/nginx.conf"
    conf = tmp_path / "nginx.conf"
    conf.write_text(text + extra)
    return conf


def nginx_test(conf: Path) -> list[str]:
    tmp = conf.parent
    return [
        tool("nginx"),
        "-t",
        "-q",
        "-p",
        str(tmp),
        "-c",
        str(conf),
        "-e",
        str(tmp / "error.log"),
        "-g",
        f"pid {tmp / 'nginx.pid'};",
    ]


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    run(nginx_test(offline_nginx_copy(tmp_path)))


def test_nginx_t_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above would notice a mistake: a bogus directive fails nginx -t."""
    cmd = nginx_test(offline_nginx_copy(tmp_path, extra="\nmodex_no_such_directive on;\n"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "modex_no_such_directive" in proc.stderr


def test_nginx_proxies_websockets_and_request_ids() -> None:
    text = NGINX_CONF.read_text()
    ws = nginx_location(text, "location = /ws")
    assert "proxy_pass http://modex_app;" in ws
    assert "gzip off;" in ws
    read_timeout = re.search(r"proxy_read_timeout\s+(\d+)([smh]);", ws)
    assert read_timeout, "the /ws location needs a long proxy_read_timeout"
    seconds = int(read_timeout.group(1)) * {"s": 1, "m": 60, "h": 3600}[read_timeout.group(2)]
    assert seconds >= 600
    # server-level headers reach /ws only if the location sets none of its own
    assert "proxy_set_header" not in ws
    for header in (
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $modex_connection;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Request-ID $modex_request_id;",
        "proxy_http_version 1.1;",
    ):
        assert header in text, header
    assert re.search(r"limit_req_zone \$binary_remote_addr zone=\w+:\d+m rate=\d+r/s;", text)
    assert "limit_req zone=" in nginx_location(text, "location /")
    assert "return 404;" in nginx_location(text, "location = /metrics")


# --- Kubernetes ------------------------------------------------------------------------


def test_k8s_manifests_pass_kubernetes_validate() -> None:
    files = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert files
    proc = run(
        [
            tool("kubernetes-validate"),
            "--strict",
            "--kubernetes-version",
            K8S_VERSION,
            *map(str, files),
        ]
    )
    output = proc.stdout + proc.stderr
    # an unknown kind or version is only a warning (exit 0): treat it as a failure
    assert "WARN" not in output and "ERROR" not in output, output
    documents = sum(len(docs) for docs in k8s_docs().values())
    assert output.count(" passed for resource ") == documents, output


def test_k8s_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(k8s_docs())
    assert kustomization["namespace"] == "modex"
    for docs in k8s_docs().values():
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "modex", doc["metadata"]["name"]


def test_k8s_deployment_agrees_with_the_app() -> None:
    (deployment,) = k8s_kind("Deployment")
    (configmap,) = k8s_kind("ConfigMap")
    (secret,) = k8s_kind("Secret")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == SERVE
    assert [p["containerPort"] for p in container["ports"]] == [4000]
    # not /ready: a shared dependency failing must not take every pod out of the Service
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"] == {
        "requests": {"memory": "256Mi", "cpu": "500m"},
        "limits": {"memory": "512Mi", "cpu": "1000m"},
    }
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # preStop sleep, then SIGTERM and the WebSocket drain, all inside the grace period
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 20
    assert pod["securityContext"]["runAsNonRoot"] is True
    refs = {next(iter(ref.values()))["name"]: kind for ref in container["envFrom"] for kind in ref}
    assert refs == {
        configmap["metadata"]["name"]: "configMapRef",
        secret["metadata"]["name"]: "secretRef",
    }
    env_keys = set(configmap["data"]) | set(secret["stringData"])
    assert set(REQUIRED_ENV) <= env_keys
    assert "MODEX_TRUSTED_PROXIES" in env_keys, "the ingress controller's X-Forwarded-For"
    source = app_source()
    for key in env_keys:
        assert f'"{key}"' in source, f"k8s sets {key}, which nothing in app/ reads"
    # the Secret is a template, and says so
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text()


def test_k8s_objects_point_at_each_other() -> None:
    (deployment,) = k8s_kind("Deployment")
    (service,) = k8s_kind("Service")
    (ingress,) = k8s_kind("Ingress")
    (hpa,) = k8s_kind("HorizontalPodAutoscaler")
    (pdb,) = k8s_kind("PodDisruptionBudget")
    (job,) = k8s_kind("Job")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] == service["spec"]["ports"][0]["name"]
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 3
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == MIGRATE
    assert migrate["image"] == server["image"]
    assert migrate["envFrom"] == server["envFrom"]


# --- deploy/k8s-data: the databases and Redis in Kubernetes ----------------------------

K8S_DATA = DEPLOY / "k8s-data"
# what the CloudNativePG CRDs need here (kubernetes-validate has no schema for them): the
# keys, and their types, that this file relies on
CNPG_SHAPES: dict[str, dict[str, type]] = {
    "Cluster": {
        "instances": int,
        "minSyncReplicas": int,
        "maxSyncReplicas": int,
        "bootstrap.initdb.database": str,
        "bootstrap.initdb.postInitApplicationSQL": list,
        "postgresql.parameters.synchronous_commit": str,
        "storage.size": str,
    },
    "Pooler": {
        "cluster.name": str,
        "instances": int,
        "type": str,
        "pgbouncer.poolMode": str,
    },
}


def k8s_data_docs() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S_DATA.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_all_yaml(path)
    ]


def dig(doc: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        assert isinstance(doc, dict) and key in doc, f"missing {dotted}"
        doc = doc[key]
    return doc


def test_k8s_data_layer_validates_and_has_the_shape_the_crds_need() -> None:
    files = sorted(p for p in K8S_DATA.glob("*.yaml") if p.name != "kustomization.yaml")
    proc = run(
        [
            tool("kubernetes-validate"),
            "--strict",
            "--kubernetes-version",
            K8S_VERSION,
            *map(str, files),
        ]
    )
    output = proc.stdout + proc.stderr
    assert "ERROR" not in output, output
    docs = k8s_data_docs()
    crds = [doc for doc in docs if doc["apiVersion"].startswith("postgresql.cnpg.io/")]
    # only the CRDs go unvalidated (a warning each); every core object passed
    assert output.count("WARN") == len(crds), output
    assert output.count(" passed for resource ") == len(docs) - len(crds), output
    kustomization = load_yaml(K8S_DATA / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in files)
    for doc in crds:
        assert doc["apiVersion"] == "postgresql.cnpg.io/v1"
        assert doc["metadata"]["namespace"] == "modex-data"
        for dotted, kind in CNPG_SHAPES[doc["kind"]].items():
            assert isinstance(dig(doc["spec"], dotted), kind), (doc["metadata"]["name"], dotted)
    clusters = {d["metadata"]["name"]: d["spec"] for d in crds if d["kind"] == "Cluster"}
    poolers = {d["metadata"]["name"]: d["spec"] for d in crds if d["kind"] == "Pooler"}
    for spec in clusters.values():
        # a synchronous standby: what a 201 answered survives a failover
        assert spec["minSyncReplicas"] >= 1 and spec["instances"] >= 2
        assert spec["postgresql"]["parameters"]["synchronous_commit"] == "on"
        # through PgBouncer the app sends no session settings: the database carries them
        settings = {
            m.group(1): m.group(2)
            for sql in spec["bootstrap"]["initdb"]["postInitApplicationSQL"]
            if (m := re.fullmatch(r"ALTER DATABASE modex SET (\w+) = (\w+)", sql))
        }
        assert settings == SESSION_SETTINGS
    for spec in poolers.values():
        assert spec["cluster"]["name"] in clusters
        assert spec["type"] == "rw" and spec["pgbouncer"]["poolMode"] == "transaction"
    # deploy/k8s's Secret names these Services: a Pooler's is its name, a Cluster's
    # standbys are `<cluster>-ro`; Redis is the headless Service of the StatefulSet
    (secret,) = k8s_kind("Secret")
    (configmap,) = k8s_kind("ConfigMap")
    values = secret["stringData"]
    assert configmap["data"]["MODEX_PGBOUNCER"] == "1"
    services = {f"{name}.modex-data.svc" for name in poolers}
    for url in [values["DATABASE_URL"], *values["SHARD_URLS"].split(",")]:
        assert urlsplit(url).hostname in services, url
    standbys = {f"{name}-ro.modex-data.svc" for name in clusters}
    assert {urlsplit(u).hostname for u in values["SHARD_READ_URLS"].split(",")} == standbys
    (redis,) = [d for d in docs if d["kind"] == "StatefulSet"]
    assert redis["spec"]["replicas"] == 6  # three masters, a replica each
    assert urlsplit(values["REDIS_URL"]).scheme == "redis+cluster"
    assert (
        urlsplit(values["REDIS_URL"]).hostname == f"{redis['spec']['serviceName']}.modex-data.svc"
    )


# --- Prometheus ------------------------------------------------------------------------


def test_alert_rules_pass_promtool() -> None:
    run([tool("promtool"), "check", "rules", str(ALERTS)])


def test_prometheus_config_passes_promtool() -> None:
    run([tool("promtool"), "check", "config", str(PROMETHEUS)])


PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "deriv", "delta",
    "histogram_quantile", "clamp_min", "clamp_max", "abs", "absent", "and", "or", "unless",
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    stripped = re.sub(r'"[^"]*"', "", expr)
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    words = set(re.findall(r"(?<![\w.])[A-Za-z_:][\w:]*", stripped)) - PROMQL_WORDS
    known = APP_METRICS | EXTERNAL_METRICS
    return {w if w in known else re.sub(r"_(bucket|count|sum)$", "", w) for w in words}


def test_alerts_use_only_metrics_that_exist() -> None:
    rules = [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    used: set[str] = set()
    for rule in rules:
        names = metric_names(rule["expr"])
        unknown = names - APP_METRICS - EXTERNAL_METRICS
        assert not unknown, f"{rule['alert']} uses unknown metrics {unknown}"
        used |= names
        assert rule["labels"]["severity"] in ("page", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    assert used >= APP_METRICS, f"no alert uses {APP_METRICS - used}"
    source = app_source()
    for name in APP_METRICS:
        assert f'"{name}"' in source, f"no metric {name} is defined in app/"


HOLDS = 'method="POST", route="/shows/{show_id}/holds", status_code="201"'
ALERT_INPUT = {
    # bookings: 60/min confirmed, 12/min failed (16.7% failing)
    'bookings_total{status="CONFIRMED", instance="app1:4000"}': "0+60x20",
    'bookings_total{status="FAILED", instance="app1:4000"}': "0+12x20",
    # shard 1's breaker opens on app1 at minute 2
    'circuit_breaker_open{shard="1", instance="app1:4000"}': "0 0 1x18",
    'circuit_breaker_open{shard="1", instance="app2:4000"}': "0x20",
    'redis_listener_up{instance="app2:4000"}': "1 1 0x18",
    # the same shard's backlog seen by two instances: one alert, not two
    'outbox_backlog{shard="0", instance="app1:4000"}': "0+20x20",
    'outbox_backlog{shard="0", instance="app3:4000"}': "0+20x20",
    # 600 holds/min, half of them slower than 0.5 s; 60 GET /shows/min failing with 503
    f"http_request_duration_seconds_count{{{HOLDS}}}": "0+600x20",
    'http_request_duration_seconds_count{method="GET", route="/shows", status_code="503"}': (
        "0+60x20"
    ),
    f'http_request_duration_seconds_bucket{{{HOLDS}, le="0.5"}}': "0+300x20",
    f'http_request_duration_seconds_bucket{{{HOLDS}, le="1"}}': "0+600x20",
    f'http_request_duration_seconds_bucket{{{HOLDS}, le="+Inf"}}': "0+600x20",
    # batches failing on app1: 30 requests a minute fall back to running alone
    'seat_requests_alone_total{reason="failed", instance="app1:4000"}': "0+30x20",
    # fan-out: 90% of events take between 1 and 2.5 s
    'fanout_lag_seconds_bucket{le="1", instance="app1:4000"}': "0+10x20",
    'fanout_lag_seconds_bucket{le="2.5", instance="app1:4000"}': "0+100x20",
    'fanout_lag_seconds_bucket{le="+Inf", instance="app1:4000"}': "0+100x20",
}
# alert -> (minute, labels, summary, description) expected to fire; None: must stay quiet
ALERT_EXPECTED: dict[str, tuple[int, dict[str, str], str, str] | None] = {
    "HighBookingFailureRate": (
        15,
        {"severity": "page"},
        "More than 5% of bookings are failing",
        "16.67% of booking attempts failed over the last 5 minutes.",
    ),
    "CircuitBreakerOpen": (
        15,
        {"severity": "page", "shard": "1"},
        "Circuit breaker open for shard 1",
        "Writes to shard 1 fail fast with 503 and reads serve stale cached state.",
    ),
    "RedisListenerDown": (
        15,
        {"severity": "page", "instance": "app2:4000"},
        "Redis pub/sub listener down on app2:4000",
        "Watchers on app2:4000 get no live seat changes until the listener reconnects and resyncs.",
    ),
    "OutboxBacklogGrowing": (
        20,
        {"severity": "warning", "shard": "0"},
        "Outbox backlog is growing on shard 0",
        "400 committed seat changes are waiting to be published; check Redis and the relay.",
    ),
    "High5xxRate": (
        15,
        {"severity": "page"},
        "More than 2% of HTTP requests end in 5xx",
        "9.091% of requests returned 5xx over the last 5 minutes.",
    ),
    "HoldLatencyP99High": (
        15,
        {"severity": "warning"},
        "p99 seat-hold latency is above 500 ms",
        "p99 of POST /shows/{id}/holds is 990ms.",
    ),
    "FanoutLagHigh": (
        15,
        {"severity": "warning"},
        "p99 fan-out lag is above 1 s",
        "Seat changes take 2.483s (p99) from commit to the watchers' sockets.",
    ),
    "SeatBatchesFailing": (
        15,
        {"severity": "warning"},
        "Seat batches are failing; each seat request runs alone",
        "0.5 seat requests/s fall back from a failed batch: a shard on an older schema (run"
        " modex migrate) or a bug. Holds still work, at a higher cost.",
    ),
    "OutboxBacklogHigh": None,
    "DBConnectionPoolNearlyExhausted": None,
    "HoldConflictRateHigh": None,
}


def test_alerts_fire_on_synthetic_series(tmp_path: Path) -> None:
    """`promtool test rules`: the main alerts fire, with their texts, on app-shaped series."""
    checks: list[dict[str, Any]] = []
    for alert, expected in ALERT_EXPECTED.items():
        if expected is None:
            checks.append({"eval_time": "15m", "alertname": alert, "exp_alerts": []})
            continue
        minute, labels, summary, description = expected
        exp = {
            "exp_labels": labels,
            "exp_annotations": {
                "summary": summary,
                "description": description,
                "runbook_url": f"docs/RUNBOOK.md#{alert.lower()}",
            },
        }
        checks.append({"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": [exp]})
    unit_test = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in ALERT_INPUT.items()],
                "alert_rule_test": checks,
            }
        ],
    }
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(yaml.safe_dump(unit_test, sort_keys=False))
    run([tool("promtool"), "test", "rules", str(tests)], cwd=tmp_path)


# --- the app's own CLI -----------------------------------------------------------------


def test_cli_accepts_the_commands_the_configs_use() -> None:
    serve = run([sys.executable, "-m", "app", "serve", "--help"]).stdout
    for flag in ("--host", "--port", "--workers"):
        assert flag in serve, flag
    run([sys.executable, "-m", "app", "migrate", "--help"])


# --- nginx for real, in front of `modex serve` processes ------------------------------


@pytest.fixture(scope="module")
def proxy(servers: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """deploy/nginx.conf running in front of the test cluster's server processes.

    Only the addresses change: app1..3 become the local servers' ports and `listen 80`
    a free local port; every other directive is the file compose mounts.
    """
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    ports = [s.port for s in servers]
    text, count = re.subn(
        r"(^\s*server\s+)app(\d+):4000",
        lambda m: f"{m.group(1)}127.0.0.1:{ports[(int(m.group(2)) - 1) % len(ports)]}",
        NGINX_CONF.read_text(),
        flags=re.M,
    )
    assert count == 3
    text, count = re.subn(r"listen 80 default_server;", f"listen 127.0.0.1:{port};", text)
    assert count == 1
    # temp files under the test's folder, not /var/lib/nginx
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp_paths, 1)
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    globals_ = f"pid {tmp / 'nginx.pid'}; daemon off;"
    if os.geteuid() == 0:
        globals_ += " user root;"  # workers must reach the root-owned temp folder
    log = (tmp / "nginx.log").open("wb")
    cmd = [tool("nginx"), "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
    proc = subprocess.Popen([*cmd, "-g", globals_], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:

        def started() -> bool:
            assert proc.poll() is None, (tmp / "nginx.log").read_text()
            return answers_ok(f"{base}/nginx-health")

        wait_until_blocking(started, 15, "nginx to start")
        yield base
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful stop of this nginx only
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def test_nginx_proxies_http_with_one_request_id(proxy: str) -> None:
    async with httpx.AsyncClient(base_url=proxy, timeout=10) as client:
        health = await client.get("/health", headers={"X-Request-ID": "deploy-test-1"})
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert health.headers.get_list("x-request-id") == ["deploy-test-1"]
        fresh = await client.get("/ready")
        assert fresh.status_code == 200, fresh.text
        (generated,) = fresh.headers.get_list("x-request-id")
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        # metrics are for Prometheus on each instance, not for the public
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/shows")).status_code == 200


async def test_nginx_carries_websockets_both_ways(
    proxy: str, show: dict[str, Any], user: str
) -> None:
    """Handshake (a browser's same-origin check included), frames both ways, and a seat
    change made over HTTP through the proxy arriving on the proxied socket."""
    ws_url = proxy.replace("http://", "ws://") + "/ws"
    async with connect(ws_url, origin=Origin(proxy), open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_frame(ws, "pong")
        await ws.send(json.dumps({"type": "subscribe", "show_id": show["id"]}))
        await next_frame(ws, "snapshot")
        async with httpx.AsyncClient(base_url=proxy, timeout=10) as client:
            held = await client.post(
                f"/shows/{show['id']}/holds", json={"seats": ["A1"]}, headers=auth(user)
            )
            assert held.status_code == 201, held.text
        change = await next_frame(ws, "seats")
        assert [c["label"] for c in change["changes"]] == ["A1"]


async def next_frame(ws: ClientConnection, kind: str, seconds: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def test_nginx_limits_writes_per_ip(proxy: str) -> None:
    """Past the per-IP write burst nginx answers 429 itself (with a request id)."""
    async with httpx.AsyncClient(base_url=proxy, timeout=30) as client:
        # all at once, so that a slow machine cannot spread them below the rate
        responses = await asyncio.gather(
            *(client.post("/deploy-test-no-such-route", content=b"{}") for _ in range(200))
        )
    limited = [r for r in responses if r.status_code == 429]
    assert limited, sorted({r.status_code for r in responses})
    assert all(r.headers.get("x-request-id") for r in limited)
    # the burst (40) lets a normal client through first
    assert len(responses) - len(limited) >= 40
