"""Static checks of deploy/: the Dockerfile, compose.yaml and the Kubernetes manifests.

No Docker engine or cluster is needed: every YAML file is parsed and cross-checked against the
others and against quota_service.settings.Settings.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from quota_service.settings import SECRET_SETTINGS, Settings, file_variable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PORT = 50051
HTTP_PORT = 8080  # QUOTA_HTTP_PORT: the Connect protocol and downloads

SETTING_VARS = {f"QUOTA_{f.name.upper()}": f for f in dataclasses.fields(Settings)}
SECRET_VARS = {f"QUOTA_{name.upper()}" for name in SECRET_SETTINGS}
FILE_VARS = {file_variable(name): name for name in SECRET_SETTINGS}  # QUOTA_POSTGRES_DSN_FILE -> postgres_dsn


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out.extend((path.name, doc) for doc in load_all(path))
    return out


def one(kind: str, file: str | None = None) -> dict[str, Any]:
    found = [d for f, d in k8s_docs() if d["kind"] == kind and (file is None or f == file)]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def deployment() -> dict[str, Any]:
    return one("Deployment", "deployment.yaml")


def container() -> dict[str, Any]:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_labels() -> dict[str, str]:
    return deployment()["spec"]["template"]["metadata"]["labels"]


def configmap_data() -> dict[str, str]:
    return one("ConfigMap", "configmap.yaml")["data"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels", "matchExpressions"}
    assert "matchExpressions" not in selector, "keep selectors to matchLabels"
    match = selector["matchLabels"]
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


# --- Kubernetes ------------------------------------------------------------------------------


def test_every_k8s_document_is_a_named_object_without_namespace() -> None:
    docs = k8s_docs()
    assert docs
    for file, doc in docs:
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], file
        assert isinstance(doc.get("kind"), str) and doc["kind"], file
        assert isinstance(doc.get("metadata", {}).get("name"), str) and doc["metadata"]["name"], file
        assert "namespace" not in doc["metadata"], f"{file}: manifests must be namespace-agnostic"


def test_expected_kinds_and_api_versions() -> None:
    kinds = {(f, d["kind"], d["apiVersion"]) for f, d in k8s_docs()}
    assert ("deployment.yaml", "Deployment", "apps/v1") in kinds
    assert ("service.yaml", "Service", "v1") in kinds
    assert ("pdb.yaml", "PodDisruptionBudget", "policy/v1") in kinds
    assert ("hpa.yaml", "HorizontalPodAutoscaler", "autoscaling/v2") in kinds
    assert ("configmap.yaml", "ConfigMap", "v1") in kinds
    assert ("secret.example.yaml", "Secret", "v1") in kinds


def test_kustomization_lists_exactly_the_manifests_but_not_the_example_secret() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    resources = kust["resources"]
    assert len(resources) == len(set(resources))
    present = {p.name for p in K8S.iterdir() if p.suffix in (".yaml", ".yml")}
    assert set(resources) == present - {"kustomization.yaml", "secret.example.yaml"}
    assert "secret.example.yaml" not in resources
    assert "namespace" not in kust


def test_deployment_shape() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] == 3
    assert selects(spec["selector"], pod_labels())
    metrics_port = int(configmap_data()["QUOTA_METRICS_PORT"])
    assert container()["ports"] == [{"name": "grpc", "containerPort": PORT, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"},
                                    {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    assert int(configmap_data()["QUOTA_HTTP_PORT"]) == HTTP_PORT
    res = container()["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])


def test_service_target_port_matches_container_port() -> None:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    services = [d for f, d in k8s_docs() if d["kind"] == "Service"]
    assert any(s["metadata"]["name"] == deployment()["metadata"]["name"] for s in services)
    for svc in services:
        spec = svc["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP"
        assert selects({"matchLabels": spec["selector"]}, pod_labels())
        port, *extra = spec["ports"]
        assert port["name"] == "grpc" and port["port"] == PORT and port["appProtocol"] == "grpc"
        target = port["targetPort"]
        assert (ports[target] if isinstance(target, str) else target) == PORT
        setting = {"metrics": "QUOTA_METRICS_PORT", "http": "QUOTA_HTTP_PORT"}
        for p in extra:  # the metrics port, which servicemonitor.yaml scrapes by name; the HTTP port
            assert ports[p["targetPort"]] == int(configmap_data()[setting[p["name"]]])


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe", "startupProbe"])
def test_probes_are_grpc_on_the_service_port(probe: str) -> None:
    p = container()[probe]
    assert set(p) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}
    assert p["grpc"]["port"] == PORT
    # liveness asks for the process alone; the others for the overall status, which follows the backends
    from quota_service.server import LIVENESS

    expected = LIVENESS if probe == "livenessProbe" else ""
    assert p["grpc"].get("service", "") == expected


def test_runs_as_non_root_with_read_only_root_filesystem() -> None:
    pod_sc = deployment()["spec"]["template"]["spec"]["securityContext"]
    c_sc = container()["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert c_sc.get("runAsNonRoot", True) is True
    assert pod_sc.get("runAsUser", 10001) == 10001 and pod_sc["runAsUser"] != 0
    assert c_sc["readOnlyRootFilesystem"] is True
    assert c_sc["allowPrivilegeEscalation"] is False
    assert c_sc["capabilities"]["drop"] == ["ALL"]


def test_termination_grace_covers_prestop_and_shutdown_grace() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    grace = float(configmap_data().get("QUOTA_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    pre_stop = 0.0
    hook = container().get("lifecycle", {}).get("preStop")
    if hook:
        cmd = hook["exec"]["command"] if "exec" in hook else ["sleep", str(hook["sleep"]["seconds"])]
        assert cmd[0] == "sleep"
        pre_stop = float(cmd[1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace
    assert pod["terminationGracePeriodSeconds"] > Settings().shutdown_grace_s


def test_configmap_holds_only_real_non_secret_settings() -> None:
    data = configmap_data()
    assert data
    for name, value in data.items():
        assert name in SETTING_VARS, f"{name} is not a Settings field"
        assert name not in SECRET_VARS, f"{name} belongs in the Secret"
        assert isinstance(value, str), f"{name}: ConfigMap values must be strings"
    assert data["QUOTA_HOST"] == "0.0.0.0"
    assert int(data["QUOTA_PORT"]) == PORT


def secret_files() -> dict[str, tuple[str, str]]:
    """Each secret setting's _FILE variable in the container -> (Secret name, key) of the file it names."""
    c = container()
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
    out = {}
    for e in c.get("env", []):
        if e["name"] in FILE_VARS:
            folder, _, key = e["value"].rpartition("/")
            out[e["name"]] = (volumes[mounts[folder]]["secret"]["secretName"], key)
    return out


def test_configmap_and_secret_form_valid_settings(tmp_path: Path) -> None:
    secret = one("Secret", "secret.example.yaml")["stringData"]
    env = dict(configmap_data())
    for var, (_name, key) in secret_files().items():  # the Secret's files, as the pod mounts them
        (tmp_path / key).write_text(secret[key])
        env[var] = str(tmp_path / key)
    settings = Settings.from_env(env)  # raises on a bad value
    assert settings.port == PORT
    assert settings.redis_url and settings.postgres_dsn and settings.bootstrap_admin_key


def test_env_wiring_configmap_and_secret() -> None:
    c = container()
    cm = one("ConfigMap", "configmap.yaml")["metadata"]["name"]
    secret = one("Secret", "secret.example.yaml")
    assert {"configMapRef": {"name": cm}} in c["envFrom"]
    for e in c.get("env", []):
        assert e["name"] in SETTING_VARS or e["name"] in FILE_VARS
        assert e["name"] not in SECRET_VARS, f"{e['name']}: a secret is given as a file, never in the environment"
    assert not any("secretRef" in src for src in c["envFrom"])
    files = secret_files()
    assert set(files) == set(FILE_VARS)  # every secret setting comes from a file of the Secret
    for name, key in files.values():
        assert name == secret["metadata"]["name"]
        assert key in secret["stringData"]


def test_example_secret_is_clearly_an_example() -> None:
    text = (K8S / "secret.example.yaml").read_text()
    assert "EXAMPLE" in text.upper()
    secret = yaml.safe_load(text)
    assert set(secret["stringData"]) == set(SECRET_SETTINGS)
    assert all("CHANGE-ME" in v for v in secret["stringData"].values())


def test_pdb_selects_the_deployment_pods() -> None:
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in pdb["spec"]
    assert selects(pdb["spec"]["selector"], pod_labels())
    assert pdb["spec"]["minAvailable"] < deployment()["spec"]["replicas"]


def test_hpa_targets_the_deployment() -> None:
    hpa = one("HorizontalPodAutoscaler")["spec"]
    dep = deployment()
    assert hpa["scaleTargetRef"] == {"apiVersion": dep["apiVersion"], "kind": "Deployment",
                                     "name": dep["metadata"]["name"]}
    assert hpa["minReplicas"] == 3 and hpa["maxReplicas"] == 12
    assert hpa["minReplicas"] <= dep["spec"]["replicas"] <= hpa["maxReplicas"]
    [metric] = hpa["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert "cpu" in container()["resources"]["requests"]  # utilisation is relative to the request


# --- compose ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    [doc] = load_all(DEPLOY / "compose.yaml")
    return doc


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def flag_value(cmd: list[str], flag: str) -> str:
    assert flag in cmd, f"{flag} missing from {cmd}"
    return cmd[cmd.index(flag) + 1]


def test_compose_services() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "postgres", "quota"}
    assert services["redis"]["image"] == "redis:7.4"
    assert services["postgres"]["image"] == "postgres:17"


def test_compose_redis_flags() -> None:
    cmd = command(compose()["services"]["redis"])
    assert cmd[0] == "redis-server"
    assert flag_value(cmd, "--appendonly") == "yes"
    assert flag_value(cmd, "--appendfsync") == "everysec"
    assert flag_value(cmd, "--maxmemory-policy") == "noeviction"


def test_compose_postgres_synchronous_commit_and_healthcheck() -> None:
    pg = compose()["services"]["postgres"]
    cmd = command(pg)
    assert cmd[0] == "postgres"
    assert flag_value(cmd, "-c") == "synchronous_commit=on"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_compose_quota_service() -> None:
    services = compose()["services"]
    quota = services["quota"]
    build = quota["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    env = quota["environment"]
    assert env["QUOTA_REDIS_URL"] == "redis://redis:6379/0"
    assert env["QUOTA_POSTGRES_DSN"] == "postgresql://quota:quota@postgres:5432/quota"
    # settings, secrets' files, and the key quota-cli reads inside the container
    assert all(name in SETTING_VARS or name in FILE_VARS or name == "QUOTA_API_KEY_FILE" for name in env)
    for dep in ("redis", "postgres"):
        assert quota["depends_on"][dep] == {"condition": "service_healthy"}
        assert "healthcheck" in services[dep]
    assert "50051:50051" in quota["ports"] and f"{HTTP_PORT}:{HTTP_PORT}" in quota["ports"]
    assert env["QUOTA_HTTP_PORT"] == str(HTTP_PORT)
    pg_env = services["postgres"]["environment"]
    assert (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"]) == ("quota",) * 3
    # compose's default stop timeout (10 s) would cut the service's graceful shutdown short
    grace = re.fullmatch(r"(\d+)s", quota["stop_grace_period"])
    assert grace and int(grace.group(1)) > Settings().shutdown_grace_s


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instrs = dockerfile_instructions()
    starts = [i for i, (w, _) in enumerate(instrs) if w == "FROM"]
    assert len(starts) >= 2, "expected a multi-stage build"
    return instrs[starts[-1]:]


def test_dockerfile_is_multi_stage_on_python_3_11_slim() -> None:
    instrs = dockerfile_instructions()
    froms = [rest for w, rest in instrs if w == "FROM"]
    assert re.search(r"\bAS\s+builder\b", froms[0], re.I)
    args = dict(rest.split("=", 1) for w, rest in instrs if w == "ARG" and "=" in rest)
    final_image = froms[-1].split()[0]
    final_image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], final_image)
    assert final_image == "python:3.11-slim"
    runs = " ".join(rest for w, rest in instrs if w == "RUN")
    assert re.search(r"pip install -c constraints\.txt \.(\s|$)", runs)  # the pinned versions
    assert "embedded" not in runs
    assert any(w == "COPY" and "--from=builder" in rest for w, rest in final_stage())


def test_dockerfile_final_user_is_not_root() -> None:
    users = [rest for w, rest in final_stage() if w == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == "10001"  # numeric, so Kubernetes' runAsNonRoot can verify it


def test_dockerfile_entrypoint_port_and_host() -> None:
    final = final_stage()
    entrypoints = [rest for w, rest in final if w == "ENTRYPOINT"]
    assert entrypoints and yaml.safe_load(entrypoints[-1]) == ["quota-service"]  # exec form
    assert any(w == "EXPOSE" and rest.split() == [str(PORT), str(HTTP_PORT)] for w, rest in final)
    env = " ".join(rest for w, rest in final if w == "ENV")
    assert "QUOTA_HOST=0.0.0.0" in env
    assert not any(w == "HEALTHCHECK" for w, _ in final)


def test_dockerfile_copies_exist_relative_to_repository_root() -> None:
    for w, rest in dockerfile_instructions():
        if w != "COPY" or "--from=" in rest:
            continue
        *sources, _dest = rest.split()
        for src in sources:
            if any(ch in src for ch in "*?["):
                continue  # optional (glob) source
            assert (ROOT / src).exists(), f"COPY source {src} missing from the build context"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*"
    for needed in ("pyproject.toml", "constraints.txt", "service/", "clients/"):
        assert f"!{needed}" in rules


# --- README ----------------------------------------------------------------------------------


def test_readme_documents_every_setting_with_its_default() -> None:
    text = (DEPLOY / "README.md").read_text()
    for name, f in SETTING_VARS.items():
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{name}`")), None)
        assert row is not None, f"{name} missing from the settings table"
        default = f.default
        if isinstance(default, bool):
            default = str(default).lower()  # as it is written in the environment
        elif isinstance(default, str) and default.startswith(f"{ROOT}/"):
            default = default[len(f"{ROOT}/"):]  # a path in the source tree is documented relative to it
        elif isinstance(default, float) and default.is_integer():
            default = int(default)
        if default != "":
            assert f"`{default}`" in row, f"{name}: default {default!r} not in {row!r}"
    for topic in ("noeviction", "synchronous_commit", "epoch", "pg_basebackup", "advisory lock", "SIGTERM"):
        assert topic in text


def test_catalogue_configmap_is_current_and_mounted() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(DEPLOY / "k8s" / "make_catalogue_configmap.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    assert configmap_data()["QUOTA_CATALOGUE_DIR"] == mounts["catalogues"]
    volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["catalogues"]["configMap"]["name"] == "quota-service-catalogues"
