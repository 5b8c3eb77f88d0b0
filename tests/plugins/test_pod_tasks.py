"""Kubernetes mode without a cluster: the pod of every stage, its exit-code contract, its table.

Pods are built with ``build_pod_request_obj(context=None, dry_run=True)`` (no kube config) and
serialized as the API server would receive them. Golden files in ``golden/`` hold the full
serialized pod of each stage (pod-name suffix and Airflow version normalised); regenerate them
with ``LEADER360V_UPDATE_GOLDEN=1`` after a deliberate change and review the diff. The
assertions below check what matters on their own, so a careless regeneration cannot hide a
regression.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from leader360v_airflow import pod_tasks as kube
from leader360v_airflow import settings
from leader360v_airflow.stage_tasks import STAGE_ORDER

GOLDEN = Path(__file__).with_name("golden")
REPO = Path(__file__).resolve().parents[2]
GPU_STAGES = {"propose", "verify", "propagate"}  # refine is an id-map post-pass since #10
LLM_STAGES = {"verify", "propagate"}  # propagate re-annotates at its check frames (#10)
KEY, VIDEO_ID, RUN = "raw/2026-11-24/clip.mp4", "0123456789abcdef", "0123456789ab"
K8S_VERSIONS = ["1.31.0", "1.37.0"]  # oldest still-supported managed clusters .. newest schemas shipped
# What the Airflow side's environment holds in production; none of it may reach a pod spec.
FAKE_SECRETS = {
    "LEADER360V_S3_ACCESS_KEY": "fake-access-key-3f9a1c",
    "LEADER360V_S3_SECRET_KEY": "fake-secret-key-b7e2d40c9a",
    "LEADER360V_LLM_API_KEY": "sk-fake-llm-key-51d8e0",
    "AIRFLOW__CORE__FERNET_KEY": "fake-fernet-key-0c3b",
}


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    for name in (kube.CONFIG_ENV, kube.IMAGE_ENV, "LEADER360V_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEADER360V_STORE", "s3://leader360v")
    monkeypatch.setenv("LEADER360V_S3_ENDPOINT", "http://minio.storage:9000")
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)


def build(stage: str, cfg: kube.K8sConfig | None = None) -> tuple[kube.StagePodOperator, dict]:
    cfg = cfg or kube.load_config()
    args = (kube.stage_arguments(stage, key=KEY) if stage == "ingest"
            else kube.stage_arguments(stage, video_id=VIDEO_ID, run=RUN))
    op = kube.StagePodOperator(task_id=stage, stage=stage, video_key=KEY, arguments=args,
                               **kube.operator_kwargs(stage, cfg))
    pod = op.build_pod_request_obj(context=None, dry_run=True)
    return op, ApiClient().sanitize_for_serialization(pod)


def normalised(pod: dict) -> dict:
    pod = json.loads(json.dumps(pod))
    pod["metadata"]["name"] = re.sub(r"-[a-z0-9]{8}$", "-XXXXXXXX", pod["metadata"]["name"])
    pod["metadata"]["labels"]["airflow_version"] = "AIRFLOW_VERSION"
    return pod


def base(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_stage_pod_matches_golden(stage):
    _, pod = build(stage)
    path = GOLDEN / f"{stage}.pod.json"
    if os.environ.get("LEADER360V_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(normalised(pod), indent=1, sort_keys=True) + "\n")
    assert normalised(pod) == json.loads(path.read_text()), f"pod of {stage} changed; see {path}"


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_stage_pod_contract(stage):
    op, pod = build(stage)
    c = base(pod)
    assert c["image"] == "leader360v-gpu:0.1.0"
    assert c["command"] == ["python", "-m", "tasks"]
    if stage == "ingest":
        assert c["args"] == ["ingest", "--key", KEY, "--xcom-file", "/airflow/xcom/return.json"]
    else:
        assert c["args"] == [stage, "--video-id", VIDEO_ID, "--run", RUN, "--xcom-file", "/airflow/xcom/return.json"]
    limits, requests = c["resources"]["limits"], c["resources"]["requests"]
    assert requests["memory"] and requests["cpu"] and limits["memory"]
    spec = pod["spec"]
    if stage in GPU_STAGES:
        assert limits["nvidia.com/gpu"] == "1" and "nvidia.com/gpu" not in requests
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert op.pool == "gpu" and op.pool_slots == 1
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
        # the wait for a GPU node does not eat into the stage's own time
        assert op.execution_timeout == settings.STAGE_TIMEOUTS[stage] + timedelta(seconds=op.startup_timeout_seconds)
    else:
        assert not any("gpu" in k for k in {**limits, **requests})
        assert not spec.get("tolerations") and not spec.get("nodeSelector")
        assert op.pool == "default_pool"
        assert op.execution_timeout == settings.STAGE_TIMEOUTS[stage]
    assert spec["activeDeadlineSeconds"] == int(op.execution_timeout.total_seconds())
    # the stage manifest comes back through the XCom sidecar, one XCom per key for the next pod
    assert op.do_xcom_push and op.multiple_outputs
    assert {"mountPath": "/airflow/xcom", "name": "xcom"} in c["volumeMounts"]
    assert [x["name"] for x in spec["containers"]] == ["base", "airflow-xcom-sidecar"]
    # autoscaled GPU nodes, cleanup, duplicates
    assert op.startup_timeout_seconds >= 600
    assert op.on_finish_action.value == "delete_succeeded_pod"
    assert op.skip_on_exit_code == [4]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # restricted Pod Security: non-root, no escalation, for the sidecar too
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1000
    for container in spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["serviceAccountName"] == "leader360v-tasks" and pod["metadata"]["namespace"] == "leader360v"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == stage


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_credentials_only_by_reference(stage):
    _, pod = build(stage)
    text = json.dumps(pod)
    for name, value in FAKE_SECRETS.items():
        assert value not in text, f"{name}'s value leaked into the pod spec of {stage}"
    c = base(pod)
    assert c["envFrom"] == [{"secretRef": {"name": "leader360v-store"}}]
    plain = {e["name"]: e.get("value") for e in c["env"] if "value" in e}
    assert not {n for n in plain if re.search(r"KEY|SECRET|PASSWORD|TOKEN", n)}, plain
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    if stage in LLM_STAGES:
        assert refs == {
            "LEADER360V_LLM_API_KEY": {"name": "leader360v-llm", "key": "api-key", "optional": True},
            "LEADER360V_LLM_BASE_URL": {"name": "leader360v-llm", "key": "base-url", "optional": True},
            "LEADER360V_LLM_ALLOWED_ENDPOINTS": {"name": "leader360v-llm", "key": "allowed-endpoints", "optional": True},
        }
    else:
        assert refs == {}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_stage_pod_validates_against_kubernetes_schema(stage, version):
    _, pod = build(stage)
    kubernetes_validate.validate(pod, version, strict=True)


def test_table_assigns_gpu_exactly_to_the_model_stages():
    cfg = kube.load_config()
    assert list(cfg.stages) == list(STAGE_ORDER)
    assert {s for s, row in cfg.stages.items() if row.gpu} == GPU_STAGES
    assert {s for s, row in cfg.stages.items() if row.secret_env} == LLM_STAGES
    assert cfg.classes["gpu"].pool == "gpu"
    # the pool the table names is the one the deployment creates
    pools = json.loads((REPO / "docker" / "airflow" / "pools.json").read_text())
    assert pools["gpu"]["include_deferred"] is True and pools["gpu"]["slots"] >= 1


def _gpu_memory_rule(pod: dict) -> str | None:
    terms = (pod["spec"].get("affinity") or {}).get("nodeAffinity", {}) \
        .get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", [])
    rules = [e for t in terms for e in t["matchExpressions"] if e["key"] == kube.GPU_MEMORY_LABEL]
    assert len(rules) in (0, len(terms)) and all(e["operator"] == "Gt" for e in rules)
    return rules[0]["values"][0] if rules else None


def test_model_stages_are_scheduled_on_cards_that_hold_their_models(tmp_path):
    """Issue 13 §4: propose and propagate run the production models; their rows ask for the GPU
    memory those need, as a node affinity on GPU feature discovery's MiB label."""
    assert {s: _gpu_memory_rule(build(s)[1]) for s in STAGE_ORDER if s in GPU_STAGES} == \
        {"propose": "16383", "verify": None, "propagate": "20479"}   # > 16 GiB, > 20 GiB
    table = yaml.safe_load(kube.DEFAULT_CONFIG.read_text())
    table["stages"]["propose"]["gpu_memory"] = "40G"                # decimal units too
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(table))
    assert _gpu_memory_rule(build("propose", kube.load_config(path))[1]) == str(-(-40 * 10**9 // 2**20) - 1)


def test_image_override_from_the_environment(monkeypatch):
    monkeypatch.setenv(kube.IMAGE_ENV, "registry.example.org/leader360v-gpu:0.1.0")
    _, pod = build("propagate")
    assert base(pod)["image"] == "registry.example.org/leader360v-gpu:0.1.0"


def test_pod_template_file_is_merged_under_explicit_settings(tmp_path):
    table = yaml.safe_load(kube.DEFAULT_CONFIG.read_text())
    table["classes"]["gpu"]["pod_template_file"] = str(REPO / "docker" / "pod_templates" / "gpu.yaml")
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(table))
    _, pod = build("propose", kube.load_config(path))
    assert pod["spec"]["priorityClassName"] == "leader360v-gpu"                  # from the template
    assert pod["spec"]["affinity"]["podAntiAffinity"]
    assert _gpu_memory_rule(pod) == "16383"        # the row's GPU memory, beside the template's affinity
    assert base(pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"              # explicit wins
    assert base(pod)["args"][0] == "propose"
    kubernetes_validate.validate(pod, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.update(imagee="x"), "unknown key"),
    (lambda t: t["stages"].pop("qa"), "one row per stage"),
    (lambda t: t["stages"]["qa"]["limits"].update({"nvidia.com/gpu": "1"}), "class gpu rows only"),
    (lambda t: t["stages"]["propose"]["limits"].pop("nvidia.com/gpu"), "class gpu rows only"),
    (lambda t: t["stages"]["qa"].update(secret_env=["vault"]), "unknown group"),
    (lambda t: t["classes"]["gpu"].update(pod_template_file="missing.yaml"), "does not exist"),
    (lambda t: t["stages"]["sdr"].update({"class": "tpu"}), "class must be one of"),
    (lambda t: t.update(on_finish_action="delete_everything"), "on_finish_action"),
    (lambda t: t["stages"]["qa"].update(gpu_memory="8Gi"), "only a row with an nvidia.com/gpu limit"),
    (lambda t: t["stages"]["propose"].update(gpu_memory="16"), "memory quantity"),
    (lambda t: t["stages"]["propose"].update(gpu_memory="lots"), "memory quantity"),
])
def test_bad_tables_fail_loudly(tmp_path, change, message):
    table = yaml.safe_load(kube.DEFAULT_CONFIG.read_text())
    change(table)
    path = tmp_path / "table.yaml"
    path.write_text(yaml.safe_dump(table))
    with pytest.raises(kube.K8sConfigError, match=message):
        kube.load_config(path)


def test_release_worker_pod_override():
    pod = kube.worker_pod_override("release")
    (container,) = pod.spec.containers
    assert container.name == "base"                     # the KubernetesExecutor's worker container
    assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}
    assert "nvidia.com/gpu" not in (container.resources.limits or {})


# -- exit codes ----------------------------------------------------------------------------------

def test_exit_code_outcomes_cover_the_cli_contract():
    from tasks import cli

    assert kube.outcome_for_exit_code(0) == "ok"
    assert kube.outcome_for_exit_code(cli.EXIT_DUPLICATE) == "skip"
    for code in (cli.EXIT_USAGE, cli.EXIT_REJECTED, cli.EXIT_GATE, cli.EXIT_UPSTREAM):
        assert kube.outcome_for_exit_code(code) == "fail"
    for code in (cli.EXIT_ERROR, 137, 143, None):      # error, OOM-killed, SIGTERM, no status
        assert kube.outcome_for_exit_code(code) == "retry"


def test_a_pod_and_a_local_task_end_the_same_way_for_every_error_class():
    """One source of truth: the exit code an error class carries, read back from a pod, gives the
    outcome the local task wrapper gives the exception itself."""
    import inspect

    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from leader360v_airflow.stage_tasks import airflow_outcome
    from tasks import errors

    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if not issubclass(cls, errors.PipelineError):
            continue
        exc = cls.__new__(cls)                           # whatever its constructor needs
        Exception.__init__(exc, "x")
        exc.__dict__.update(reason="x", message="x")
        local = airflow_outcome(exc)
        expected = {AirflowSkipException: "skip", AirflowFailException: "fail", type(None): "retry"}[type(local)]
        assert kube.outcome_for_exit_code(cls.exit_code) == expected, cls


def finished_pod(exit_code: int) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="l360-ingest-abcdefgh", namespace="leader360v"),
        status=k8s.V1PodStatus(phase="Succeeded" if exit_code == 0 else "Failed", container_statuses=[
            k8s.V1ContainerStatus(name="base", image="img", image_id="", ready=False, restart_count=0,
                                  state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code))),
        ]))


@pytest.fixture
def ingest_op(monkeypatch):
    op, _ = build("ingest")
    # everything in cleanup() that would talk to the API server
    for name in ("process_pod_deletion", "patch_already_checked", "_read_pod_container_states",
                 "_read_pod_events", "is_istio_enabled"):
        monkeypatch.setattr(op, name, lambda *a, **k: None)
    return op


@pytest.mark.parametrize("code", [2, 3, 5, 6])
def test_permanent_exit_codes_fail_without_retry(ingest_op, code):
    pod = finished_pod(code)
    with pytest.raises(kube.PermanentStageFailure) as info:
        ingest_op.cleanup(pod, pod)
    # AirflowFailException: the task runner fails the task without consulting retries or a retry policy
    assert isinstance(info.value, AirflowFailException) and info.value.exit_code == code
    assert "exited with code" in str(info.value)


def test_duplicate_exit_code_skips(ingest_op):
    pod = finished_pod(4)
    with pytest.raises(AirflowSkipException):
        ingest_op.cleanup(pod, pod)


@pytest.mark.parametrize("code", [1, 137])
def test_other_failures_stay_retryable(ingest_op, code):
    pod = finished_pod(code)
    with pytest.raises(AirflowException) as info:
        ingest_op.cleanup(pod, pod)
    assert not isinstance(info.value, (AirflowFailException, AirflowSkipException))


def test_success_passes(ingest_op):
    pod = finished_pod(0)
    ingest_op.cleanup(pod, pod)


def test_manifest_gets_the_upload_key_like_local_mode(ingest_op):
    out = ingest_op._manifest({"stage": "ingest", "video_id": VIDEO_ID, "run": RUN})
    assert out == {"stage": "ingest", "video_id": VIDEO_ID, "run": RUN, "key": KEY}
    with pytest.raises(AirflowException, match="not a manifest"):
        ingest_op._manifest(["not", "a", "dict"])
    with pytest.raises(AirflowException, match="no manifest") as info:    # retryable: the stage is committed
        ingest_op._manifest(None)
    assert not isinstance(info.value, AirflowFailException)


# -- run-time arguments --------------------------------------------------------------------------

def cli_config(args: list[str]):
    """The configuration `python -m tasks ingest ...` builds from these arguments."""
    from tasks import cli

    return cli._config(cli.build_parser().parse_args(["ingest", "--key", KEY, *args]))


def test_ingest_pod_records_the_same_run_as_local_mode(tmp_path, monkeypatch):
    base_file = tmp_path / "pipeline.yaml"
    base_file.write_text(yaml.safe_dump({"video": {"fps": 10}, "verify": {"llm_model": "Qwen3-VL-8B-Instruct-AWQ"}}))
    monkeypatch.setenv("LEADER360V_CONFIG", str(base_file))
    # an endpoint a configuration may pick must be one the deployment lists (issue 12)
    monkeypatch.setenv("LEADER360V_LLM_ALLOWED_ENDPOINTS", "http://vllm.llm:8000/v1")
    params = {"config_overrides": {"refine.tau": 0.004, "verify.llm_base_url": "http://vllm.llm:8000/v1"}, "force": False}
    local = settings.pipeline_config(params["config_overrides"])            # what local mode runs
    args = kube.runtime_arguments("ingest", params)
    assert cli_config(args).hash == local.hash
    assert "--force" not in args
    assert set(args[1::2]) >= {'video.fps=10.0', 'refine.tau=0.004', 'verify.llm_base_url="http://vllm.llm:8000/v1"'}


def test_defaults_need_no_arguments_and_force_reaches_every_stage():
    assert kube.runtime_arguments("ingest", {"config_overrides": {}, "force": False}) == []
    for stage in STAGE_ORDER:
        args = kube.runtime_arguments(stage, {"config_overrides": {"refine.tau": 0.01}, "force": True})
        assert args[-1] == "--force"
        # downstream pods reload the run's configuration from the store (--run), never --set
        assert ("--set" in args) == (stage == "ingest")
