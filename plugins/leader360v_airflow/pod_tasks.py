"""Kubernetes mode: every stage is a pod running ``python -m tasks <stage> ...`` in the task image.

Imported only when :func:`settings.execution_mode` says ``kubernetes`` (it pulls in the cncf
provider and the Kubernetes client, which local-mode parsing must not pay for).

Design, in the order a pod's life goes:

* **Resources and placement are data**: ``resources.yaml`` (one row per stage, one block per
  pod class) -- the Recidiviz pattern of a resource table keyed by entrypoint
  (docs/reference/airflow3_notes.md §5 D). GPU stages ask for ``nvidia.com/gpu``, tolerate the
  GPU taint, select GPU nodes and take a slot of the ``gpu`` pool. A row's ``gpu_memory`` (issue 13
  §4) is a required node affinity on the GPU feature discovery label ``nvidia.com/gpu.memory``
  (MiB per GPU): the stage is only scheduled on a card that holds its models.
* **Arguments come from the upstream pod's XCom**: every stage pod pushes its manifest with
  ``multiple_outputs``, so the next stage's ``arguments`` hold ``previous["video_id"]`` and
  ``previous["run"]`` -- XComArgs that Airflow resolves at run time, for the same map index of
  the mapped ``video`` group, and that also draw the dependency edge. No helper task is added, so
  the graph is the local mode's graph. (Jinja ``ti.xcom_pull`` would need the group id and an
  explicit ``map_indexes=ti.map_index`` in every template; ``arguments`` passed through
  ``expand()`` would not be rendered at all; a helper task per stage would change the graph.)
  Downstream stages pass only ``--run``: the pod reloads the run's configuration from the store,
  where ingest recorded it, so a run can never mix configurations.
* **What can only be known at run time is appended at run time**: the DAG-run params
  (``config_overrides`` -> ``--set`` for ingest, ``force`` -> ``--force``), see
  :func:`runtime_arguments`.
* **The manifest comes back through** ``/airflow/xcom/return.json`` (``--xcom-file``, small JSON,
  URIs only); the operator adds the upload's object key, exactly as local mode does, so
  ``publish_ready`` reads the same rows in both modes.
* **Exit codes become Airflow outcomes** (:func:`outcome_for_exit_code`): 4 (duplicate) skips via
  the provider's ``skip_on_exit_code``; 2, 3, 5, 6, 7 (bad configuration, rejected and quarantined
  input, failed gate, missing upstream) fail at once with :class:`PermanentStageFailure`, an
  ``AirflowFailException``; anything else (1, OOM-killed 137, node lost) is retried.
  The provider has no "fail without retry on exit code" option, and Airflow 3.3's
  ``retry_policy`` (``ExceptionRetryPolicy``) only sees the exception -- KPO's failure is a plain
  ``AirflowException`` whose exit code is only in its text. So :meth:`StagePodOperator.cleanup`,
  which both the sync and the deferrable path end in, reads the base container's exit code from
  the pod status and raises the typed exception; the task runner never consults a retry policy
  for an ``AirflowFailException``.
* **Secrets by reference only**: the object-store Secret as ``envFrom``, the LLM key as a
  ``secretKeyRef`` -- the pod spec, the logs and XCom never hold a credential.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from kubernetes.client import models as k8s

from leader360v_airflow import settings
from tasks.errors import EXIT_CODES, exit_outcome

CONFIG_ENV = "LEADER360V_K8S_CONFIG"
IMAGE_ENV = "LEADER360V_TASK_IMAGE"
DEFAULT_CONFIG = Path(__file__).with_name("resources.yaml")
XCOM_FILE = "/airflow/xcom/return.json"
COMMAND = ["python", "-m", "tasks"]

# Exit codes of `python -m tasks` and what they mean, read from the error classes' table
# (tasks/errors.py), so a pod's exit code and a local task's exception end the same way.
PERMANENT_EXIT_CODES = {c: o.description for c, o in EXIT_CODES.items() if o.outcome == "fail"}
SKIP_EXIT_CODES = {c: o.description for c, o in EXIT_CODES.items() if o.outcome == "skip"}

_TOP_KEYS = {
    "image", "image_pull_policy", "image_pull_secrets", "namespace", "service_account_name",
    "kubernetes_conn_id", "deferrable", "startup_timeout_seconds", "on_finish_action",
    "termination_grace_period", "security_context", "container_security_context", "env", "store_secret",
    "secret_env", "classes", "stages", "worker_pods",
}
_CLASS_KEYS = {"pool", "pool_slots", "node_selector", "tolerations", "pod_template_file", "shm_size"}
_ROW_KEYS = {"class", "requests", "limits", "secret_env", "gpu_memory"}
# Label NVIDIA GPU feature discovery (GPU operator) puts on every GPU node: memory of one GPU in MiB.
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_SECRET_REF_KEYS = {"secret", "key", "optional"}
_FINISH_ACTIONS = {"delete_pod", "delete_succeeded_pod", "delete_active_pod", "keep_pod"}


class K8sConfigError(ValueError):
    """The Kubernetes table is invalid; the message names the file and the key."""


class PermanentStageFailure(AirflowFailException):
    """A stage pod exited with a code that a retry cannot change (the task fails at once)."""

    def __init__(self, stage: str, exit_code: int, detail: str):
        super().__init__(f"stage {stage}: pod exited with code {exit_code}: {PERMANENT_EXIT_CODES[exit_code]}\n{detail}")
        self.stage = stage
        self.exit_code = exit_code


def outcome_for_exit_code(exit_code: int | None) -> str:
    """``"ok"``, ``"skip"``, ``"fail"`` (no retry) or ``"retry"`` for a stage pod's exit code."""
    return exit_outcome(exit_code).outcome


# -- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PodClass:
    name: str
    pool: str
    pool_slots: int
    node_selector: dict[str, str]
    tolerations: list[dict]
    pod_template_file: str | None
    shm_size: str | None


@dataclass(frozen=True)
class PodRow:
    name: str
    pod_class: PodClass
    requests: dict[str, str]
    limits: dict[str, str]
    secret_env: tuple[str, ...]
    gpu_memory_mib: int | None = None   # the GPU memory the stage needs (gpu rows only)

    @property
    def gpu(self) -> bool:
        return any(k.endswith("/gpu") for k in self.limits)


@dataclass(frozen=True)
class K8sConfig:
    path: Path
    image: str
    image_pull_policy: str
    image_pull_secrets: list[str]
    namespace: str
    service_account_name: str | None
    kubernetes_conn_id: str
    deferrable: bool
    startup_timeout_seconds: int
    on_finish_action: str
    termination_grace_period: int | None
    security_context: dict
    container_security_context: dict
    env: dict[str, str]
    store_secret: str
    secret_env: dict[str, dict[str, dict]]
    classes: dict[str, PodClass]
    stages: dict[str, PodRow]
    worker_pods: dict[str, PodRow]


def _fail(path: Path, msg: str):
    raise K8sConfigError(f"{path}: {msg}")


def _mapping(path: Path, value: Any, where: str, allowed: set[str] | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(path, f"{where} must be a mapping, not {type(value).__name__}")
    if allowed is not None and (unknown := set(value) - allowed):
        _fail(path, f"unknown key(s) {sorted(unknown)} in {where}; allowed: {sorted(allowed)}")
    return value


def _quantities(path: Path, value: Any, where: str) -> dict[str, str]:
    out = {}
    for k, v in _mapping(path, value, where).items():
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            _fail(path, f"{where}.{k} must be a Kubernetes quantity such as \"2\" or \"16Gi\"")
        out[str(k)] = str(v)
    return out


def _row(path: Path, name: str, raw: Any, classes: dict[str, PodClass], secret_env: dict, where: str) -> PodRow:
    raw = _mapping(path, raw, f"{where}.{name}", _ROW_KEYS)
    cls = raw.get("class")
    if cls not in classes:
        _fail(path, f"{where}.{name}.class must be one of {sorted(classes)}, got {cls!r}")
    groups = tuple(raw.get("secret_env") or ())
    if unknown := [g for g in groups if g not in secret_env]:
        _fail(path, f"{where}.{name}.secret_env names unknown group(s) {unknown}; defined: {sorted(secret_env)}")
    row = PodRow(name, classes[cls], _quantities(path, raw.get("requests"), f"{where}.{name}.requests"),
                 _quantities(path, raw.get("limits"), f"{where}.{name}.limits"), groups,
                 _mib(path, raw["gpu_memory"], f"{where}.{name}.gpu_memory") if raw.get("gpu_memory") else None)
    if row.gpu != (cls == "gpu"):
        _fail(path, f"{where}.{name}: nvidia.com/gpu limits belong to class gpu rows only")
    if row.gpu_memory_mib and not row.gpu:
        _fail(path, f"{where}.{name}.gpu_memory: only a row with an nvidia.com/gpu limit can ask for GPU memory")
    return row


def _mib(path: Path, value: Any, where: str) -> int:
    """A memory quantity ("24Gi", "40G", "16384Mi") in MiB, rounded up."""
    text = str(value).strip()
    unit = next((u for u in (*_BINARY, *_DECIMAL) if text.endswith(u)), "")
    try:
        number = float(text[:len(text) - len(unit)])
    except ValueError:
        number = -1.0
    if isinstance(value, bool) or not unit or not number > 0:
        _fail(path, f"{where} must be a memory quantity such as \"24Gi\", got {value!r}")
    return -(-int(number * {**_BINARY, **_DECIMAL}[unit]) // 2**20)


def load_config(path: str | Path | None = None) -> K8sConfig:
    """Read and check the Kubernetes table (``LEADER360V_K8S_CONFIG``, else ``resources.yaml``)."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise K8sConfigError(f"cannot read the Kubernetes table {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise K8sConfigError(f"{path} is not valid YAML: {exc}") from exc
    raw = _mapping(path, raw, "the top level", _TOP_KEYS)
    if missing := {"image", "namespace", "store_secret", "classes", "stages"} - set(raw):
        _fail(path, f"missing key(s) {sorted(missing)}")

    secret_env: dict[str, dict[str, dict]] = {}
    for group, variables in _mapping(path, raw.get("secret_env"), "secret_env").items():
        secret_env[group] = {}
        for var, ref in _mapping(path, variables, f"secret_env.{group}").items():
            ref = _mapping(path, ref, f"secret_env.{group}.{var}", _SECRET_REF_KEYS)
            if not ref.get("secret") or not ref.get("key"):
                _fail(path, f"secret_env.{group}.{var} needs `secret` (a Secret's name) and `key`")
            secret_env[group][str(var)] = ref

    classes: dict[str, PodClass] = {}
    for name, c in _mapping(path, raw.get("classes"), "classes").items():
        c = _mapping(path, c, f"classes.{name}", _CLASS_KEYS)
        template = c.get("pod_template_file")
        if template:
            template = str((path.parent / template).resolve()) if not os.path.isabs(template) else template
            if not os.path.isfile(template):
                _fail(path, f"classes.{name}.pod_template_file {template} does not exist")
        tolerations = c.get("tolerations") or []
        if not isinstance(tolerations, list):
            _fail(path, f"classes.{name}.tolerations must be a list")
        classes[name] = PodClass(
            name, str(c.get("pool") or "default_pool"), int(c.get("pool_slots") or 1),
            {str(k): str(v) for k, v in _mapping(path, c.get("node_selector"), f"classes.{name}.node_selector").items()},
            tolerations, template, str(c["shm_size"]) if c.get("shm_size") else None,
        )

    from tasks.stages import STAGE_NAMES as STAGE_ORDER

    stages_raw = _mapping(path, raw.get("stages"), "stages")
    if sorted(stages_raw) != sorted(STAGE_ORDER):
        _fail(path, f"stages must have exactly one row per stage {list(STAGE_ORDER)}; has {sorted(stages_raw)}")
    stages = {s: _row(path, s, stages_raw[s], classes, secret_env, "stages") for s in STAGE_ORDER}
    worker_pods = {n: _row(path, n, r, classes, secret_env, "worker_pods")
                   for n, r in _mapping(path, raw.get("worker_pods"), "worker_pods").items()}

    finish = raw.get("on_finish_action", "delete_succeeded_pod")
    if finish not in _FINISH_ACTIONS:
        _fail(path, f"on_finish_action must be one of {sorted(_FINISH_ACTIONS)}")
    env = {str(k): str(v) for k, v in _mapping(path, raw.get("env"), "env").items()}
    return K8sConfig(
        path=path,
        image=os.environ.get(IMAGE_ENV) or str(raw["image"]),
        image_pull_policy=str(raw.get("image_pull_policy") or "IfNotPresent"),
        image_pull_secrets=[str(s) for s in raw.get("image_pull_secrets") or []],
        namespace=str(raw["namespace"]),
        service_account_name=raw.get("service_account_name"),
        kubernetes_conn_id=str(raw.get("kubernetes_conn_id") or "kubernetes_default"),
        deferrable=bool(raw.get("deferrable", False)),
        startup_timeout_seconds=int(raw.get("startup_timeout_seconds") or 120),
        on_finish_action=finish,
        termination_grace_period=raw.get("termination_grace_period"),
        security_context=_mapping(path, raw.get("security_context"), "security_context"),
        container_security_context=_mapping(path, raw.get("container_security_context"), "container_security_context"),
        env=env,
        store_secret=str(raw["store_secret"]),
        secret_env=secret_env,
        classes=classes,
        stages=stages,
        worker_pods=worker_pods,
    )


@functools.cache
def _config_cached(path: str) -> K8sConfig:
    return load_config(path)


def config() -> K8sConfig:
    """The table for this process (read once per path; a DAG parse builds nine pods from it)."""
    return _config_cached(str(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG))


# -- Kubernetes objects from the table ---------------------------------------------------------

def _pod_from_manifest(spec: dict) -> k8s.V1Pod:
    """camelCase manifest -> client model, through the provider's own deserializer."""
    return PodGenerator.deserialize_model_dict({"apiVersion": "v1", "kind": "Pod", "spec": spec})


def _resources(row: PodRow) -> k8s.V1ResourceRequirements:
    return k8s.V1ResourceRequirements(requests=dict(row.requests) or None, limits=dict(row.limits) or None)


def _env(cfg: K8sConfig, row: PodRow) -> list[k8s.V1EnvVar]:
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(cfg.env.items())]
    for group in row.secret_env:
        for var, ref in sorted(cfg.secret_env[group].items()):
            env.append(k8s.V1EnvVar(name=var, value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(
                name=str(ref["secret"]), key=str(ref["key"]), optional=bool(ref.get("optional", False))))))
    return env


def _gpu_memory_affinity(row: PodRow) -> k8s.V1Affinity | None:
    """The row's GPU memory as a required node affinity (``Gt`` compares a label as an integer),
    merged into the affinity of the class's pod template: the operator's affinity replaces the
    template's whole, so the template's (e.g. its pod anti-affinity) is carried over here."""
    if not row.gpu_memory_mib:
        return None
    need = k8s.V1NodeSelectorRequirement(key=GPU_MEMORY_LABEL, operator="Gt", values=[str(row.gpu_memory_mib - 1)])
    affinity = None
    if row.pod_class.pod_template_file:
        affinity = PodGenerator.deserialize_model_file(row.pod_class.pod_template_file).spec.affinity
    affinity = copy.deepcopy(affinity) or k8s.V1Affinity()
    affinity.node_affinity = affinity.node_affinity or k8s.V1NodeAffinity()
    required = affinity.node_affinity.required_during_scheduling_ignored_during_execution
    if required is None or not required.node_selector_terms:
        required = k8s.V1NodeSelector(node_selector_terms=[k8s.V1NodeSelectorTerm(match_expressions=[])])
    for term in required.node_selector_terms:     # terms are ORed: each must carry the requirement
        term.match_expressions = [*(term.match_expressions or []), need]
    affinity.node_affinity.required_during_scheduling_ignored_during_execution = required
    return affinity


def operator_kwargs(stage: str, cfg: K8sConfig | None = None) -> dict[str, Any]:
    """Everything a stage's pod operator gets from the table (no arguments, no upstream)."""
    cfg = cfg or config()
    row = cfg.stages[stage]
    cls = row.pod_class
    placement = _pod_from_manifest({
        "tolerations": cls.tolerations,
        "securityContext": cfg.security_context,
        "containers": [{"name": "base", "securityContext": cfg.container_security_context}],
    })
    volumes, mounts = [], []
    if cls.shm_size:
        volumes.append(k8s.V1Volume(name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=cls.shm_size)))
        mounts.append(k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"))
    timeout = settings.STAGE_TIMEOUTS[stage]
    if row.gpu:
        # the wait for an autoscaled GPU node is not the stage's own time
        timeout += timedelta(seconds=cfg.startup_timeout_seconds)
    return dict(
        name=f"l360-{stage}",
        namespace=cfg.namespace,
        image=cfg.image,
        image_pull_policy=cfg.image_pull_policy,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=s) for s in cfg.image_pull_secrets] or None,
        service_account_name=cfg.service_account_name,
        kubernetes_conn_id=cfg.kubernetes_conn_id,
        cmds=list(COMMAND),
        container_resources=_resources(row),
        node_selector=dict(cls.node_selector) or None,
        tolerations=placement.spec.tolerations or None,
        affinity=_gpu_memory_affinity(row),
        pod_template_file=cls.pod_template_file,
        security_context=placement.spec.security_context,
        container_security_context=placement.spec.containers[0].security_context,
        xcom_sidecar_container_security_context=copy.deepcopy(placement.spec.containers[0].security_context),
        env_vars=_env(cfg, row),
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=cfg.store_secret))],
        volumes=volumes,
        volume_mounts=mounts,
        labels={"app.kubernetes.io/name": "leader360v", "app.kubernetes.io/component": stage,
                "leader360v/pod-class": cls.name},
        do_xcom_push=True,
        multiple_outputs=True,
        skip_on_exit_code=sorted(SKIP_EXIT_CODES),
        termination_message_policy="FallbackToLogsOnError",  # the CLI's last stderr lines reach the task log
        get_logs=True,
        log_events_on_failure=True,
        log_pod_spec_on_failure=False,
        on_finish_action=cfg.on_finish_action,
        startup_timeout_seconds=cfg.startup_timeout_seconds,
        deferrable=cfg.deferrable,
        termination_grace_period=cfg.termination_grace_period,
        # a pod left behind by a lost worker still ends
        active_deadline_seconds=int(timeout.total_seconds()),
        execution_timeout=timeout,
        pool=cls.pool,
        pool_slots=cls.pool_slots,
        map_index_template="{{ video_label }}",
    )


def worker_pod_override(name: str, cfg: K8sConfig | None = None) -> k8s.V1Pod:
    """A KubernetesExecutor ``pod_override`` giving an Airflow task's worker pod its table row."""
    cfg = cfg or config()
    if name not in cfg.worker_pods:
        raise K8sConfigError(f"{cfg.path}: worker_pods has no row {name!r}")
    row = cfg.worker_pods[name]
    pod = _pod_from_manifest({"tolerations": row.pod_class.tolerations, "containers": [{"name": "base"}]})
    return k8s.V1Pod(spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name="base", resources=_resources(row))],
        node_selector=dict(row.pod_class.node_selector) or None,
        tolerations=pod.spec.tolerations or None,
    ))


# -- run-time arguments ------------------------------------------------------------------------

def _leaf_diff(base: Any, value: Any, prefix: str = ""):
    if isinstance(base, dict) and isinstance(value, dict) and set(base) == set(value):
        for k in sorted(value):
            yield from _leaf_diff(base[k], value[k], f"{prefix}{k}.")
    elif base != value:
        yield prefix[:-1], value


def config_arguments(config) -> list[str]:
    """``--set`` arguments that rebuild ``config`` from the defaults inside the pod.

    The ingest pod must record the same configuration (hence the same run hash) that local mode
    would use: ``LEADER360V_CONFIG`` on the Airflow side plus the run's ``config_overrides``. The
    pod cannot see the Airflow side's file, so the difference to the defaults travels as
    arguments (configuration holds no secrets: the LLM key is read from an environment variable
    it only names). Checked by rebuilding the configuration the way ``python -m tasks`` does.
    """
    from tasks.config import PipelineConfig

    base = PipelineConfig()
    args, overrides = [], {}
    for key, value in _leaf_diff(base.model_dump(mode="json"), config.model_dump(mode="json")):
        if not key:
            raise AirflowFailException("the configuration cannot be expressed as --set overrides")
        args += ["--set", f"{key}={json.dumps(value, sort_keys=True, separators=(',', ':'))}"]
        overrides[key] = value
    if base.with_overrides(overrides).hash != config.hash:
        raise AirflowFailException(
            f"the configuration {config.hash} cannot be rebuilt from --set overrides in the pod "
            "(a mapping lost keys); put the keys back or use the defaults")
    return args


def runtime_arguments(stage: str, params) -> list[str]:
    """Arguments decided by the DAG run's params, appended when the task starts."""
    args: list[str] = []
    if stage == "ingest":
        args += config_arguments(settings.pipeline_config(params.get("config_overrides") or {}))
    if params.get("force"):
        args.append("--force")
    return args


# -- the operator ------------------------------------------------------------------------------

def base_exit_code(pod: k8s.V1Pod | None, container: str = "base") -> int | None:
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    status = next((s for s in statuses if s.name == container), None)
    terminated = status.state.terminated if status is not None and status.state else None
    return terminated.exit_code if terminated is not None else None


class StagePodOperator(KubernetesPodOperator):
    """A KubernetesPodOperator for one pipeline stage, with the pipeline's exit-code contract.

    :param stage: the stage (``python -m tasks <stage>``).
    :param video_key: the upload's object key (templated; an XComArg of the upstream pod). Shown
        as the mapped instance's name and added to the returned manifest, as local mode does.
    """

    template_fields = (*KubernetesPodOperator.template_fields, "video_key")

    def __init__(self, *, stage: str, video_key: Any = None, **kwargs):
        super().__init__(**kwargs)
        self.stage = stage
        self.video_key = video_key

    def execute(self, context):
        context["video_label"] = self.video_key or ""
        try:
            extra = runtime_arguments(self.stage, context["params"])
        except Exception as exc:  # a bad configuration fails once, like a local task's
            from leader360v_airflow.stage_tasks import airflow_outcome

            mapped = airflow_outcome(exc)
            if mapped is None:
                raise
            raise mapped from exc
        self.arguments = [*(self.arguments or []), *extra]
        return self._manifest(super().execute(context))

    def trigger_reentry(self, context, event):
        context["video_label"] = self.video_key or ""
        return self._manifest(super().trigger_reentry(context, event))

    def _manifest(self, result):
        # (A deferred pod never gets here from execute(): execute_async raises TaskDeferred.)
        if result is None:
            # The pod succeeded but its manifest is gone (empty return.json, or the pod was garbage
            # collected before re-entry from deferral). The next stage needs its keys, and a retry
            # is cheap: the stage is committed, so the pod skips it and prints the manifest again.
            raise AirflowException(f"stage {self.stage}: the pod returned no manifest; retrying re-reads it")
        if not isinstance(result, dict):
            raise AirflowException(f"stage {self.stage}: the pod returned {type(result).__name__}, not a manifest")
        return {**result, "key": self.video_key}

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None):
        try:
            super().cleanup(pod, remote_pod, xcom_result=xcom_result, context=context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            code = base_exit_code(remote_pod, self.base_container_name)
            if outcome_for_exit_code(code) == "fail":
                raise PermanentStageFailure(self.stage, code, str(exc)) from exc
            raise


def stage_arguments(stage: str, *, key: Any = None, video_id: Any = None, run: Any = None) -> list:
    """The container arguments fixed at parse time (values may be XComArgs, resolved at run time)."""
    head = ["ingest", "--key", key] if stage == "ingest" else [stage, "--video-id", video_id, "--run", run]
    return [*head, "--xcom-file", XCOM_FILE]


def stage_pod_task(stage: str):
    """``stage_task`` of kubernetes mode: a callable taking what the local task takes.

    ``ingest`` takes the upload's object key (the mapped group's argument); every other stage
    takes the previous stage's output, whose pushed keys become this pod's arguments.
    """
    kwargs = operator_kwargs(stage)

    def build(upstream):
        if stage == "ingest":
            video_key, arguments = upstream, stage_arguments(stage, key=upstream)
        else:
            video_key = upstream["key"]
            arguments = stage_arguments(stage, video_id=upstream["video_id"], run=upstream["run"])
        op = StagePodOperator(task_id=stage, stage=stage, video_key=video_key, arguments=arguments,
                              **copy.deepcopy(kwargs))
        return op.output

    return build
