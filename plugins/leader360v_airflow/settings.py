"""Deployment settings read in one place (environment first; Airflow Variables where safe).

* ``LEADER360V_STORE``: the object store (directory / file:// URL locally, s3://bucket on MinIO).
* ``LEADER360V_CONFIG``: optional path to a pipeline configuration file (JSON/YAML) used as the
  base configuration; DAG-run params ``config_overrides`` apply on top.
* ``LEADER360V_EXECUTION`` (or the Airflow Variable ``leader360v_execution``, which wins):
  ``local`` (stages run in the worker) or ``kubernetes`` (each stage is a pod in the GPU task
  image); see :func:`execution_mode`.
* ``LEADER360V_K8S_CONFIG`` / ``LEADER360V_TASK_IMAGE``: the pod table of kubernetes mode
  (default ``resources.yaml`` beside this module) and the task image (see ``pod_tasks.py``).
* ``LEADER360V_RETRIES`` / ``LEADER360V_RETRY_DELAY_SECONDS``: retry policy of stage tasks.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

from tasks.stages import STAGE_NAMES

EXECUTION_MODES = ("local", "kubernetes")
EXECUTION_ENV = "LEADER360V_EXECUTION"
EXECUTION_VARIABLE = "leader360v_execution"

# (pid, mode): the mode is read once per process. The dag-processor parses every file in a fresh
# child process and a worker runs every task in one, so each parse / task reads it once, and a
# forked child never inherits its parent's answer.
_mode: tuple[int, str] | None = None


def execution_mode() -> str:
    """How stages run: ``"local"`` or ``"kubernetes"``, decided when a DAG file is parsed.

    The mode picks the operator class of every stage task, so it has to be known at parse time.
    Precedence, first set wins:

    1. the Airflow Variable ``leader360v_execution`` (UI, CLI, REST API, or the environment
       variable ``AIRFLOW_VAR_LEADER360V_EXECUTION``) -- an operator can flip the mode without a
       redeploy;
    2. the environment variable ``LEADER360V_EXECUTION`` -- the deployment's default (the Helm
       values set ``kubernetes``, compose and laptops leave it ``local``);
    3. ``local``.

    Why reading the Variable here is safe: it happens once per parse of a DAG file and once per
    task (see ``_mode``), not once per stage. The Task SDK's ``Variable.get`` asks the secrets
    backends in order -- environment variables first, so a Variable pinned with
    ``AIRFLOW_VAR_...`` costs no database access at all; otherwise the dag-processor answers it
    through its supervisor (one small metadata-DB read per parse, cached across parses for
    ``[secrets] cache_ttl_seconds`` when ``[secrets] use_cache`` is on, as in the Helm values).
    Outside Airflow's processes (unit tests, ``python dags/x.py``) only the environment backends
    are consulted, so parsing never needs a database. A failed lookup (API down) raises: an import
    error shows in the UI, whereas silently falling back to the environment could flip the GPU
    stages of a running deployment into CPU workers for one parse. An invalid value raises too.
    """
    global _mode
    pid = os.getpid()
    if _mode is not None and _mode[0] == pid:
        return _mode[1]
    mode = read_execution_mode()
    _mode = (pid, mode)
    return mode


def read_execution_mode() -> str:
    """The execution mode as the switch says now (no per-process cache); raises ``ValueError``
    naming the setting and its fix for an invalid value."""
    from airflow.sdk import Variable

    raw, source = Variable.get(EXECUTION_VARIABLE, default=None), f"Airflow Variable {EXECUTION_VARIABLE}"
    if raw is None or not str(raw).strip():
        raw, source = os.environ.get(EXECUTION_ENV), EXECUTION_ENV
    if raw is None or not str(raw).strip():
        raw, source = "local", "default"
    mode = str(raw).strip().lower()
    if mode not in EXECUTION_MODES:
        if source == EXECUTION_ENV:
            fix = f"set the environment variable {EXECUTION_ENV} of the Airflow deployment to local or kubernetes"
        else:
            fix = (f"set it to local or kubernetes (Admin -> Variables, or `airflow variables set "
                   f"{EXECUTION_VARIABLE} local`), or delete it to use {EXECUTION_ENV}")
        raise ValueError(f"{source}={raw!r} is not an execution mode: {fix} "
                         "(local: stages run in the Airflow worker; kubernetes: each stage is a pod)")
    return mode


def deployment_problems() -> list[str]:
    """What in the deployment would make every video of a run fail, each with its fix: checked
    once in ``discover``, before any video is touched, instead of once per video and retry.

    * the execution-mode switch: valid, and the mode the DAG was parsed in (a Variable changed
      after the last parse would run stages in a mode the graph was not built for);
    * kubernetes mode: the Airflow connection that starts the stage pods exists;
    * the object store can be opened (its connection, when ``LEADER360V_STORE_CONN_ID`` names one).
    """
    problems: list[str] = []
    try:
        now = read_execution_mode()
    except ValueError as exc:
        problems.append(str(exc))
        now = None
    parsed = execution_mode() if now is not None else None
    if now is not None and now != parsed:
        problems.append(f"the execution mode is now {now!r} but this DAG was parsed in {parsed!r} mode: wait for the "
                        "dag-processor to re-parse the DAG files (or run `airflow dags reserialize`), then trigger again")
    if parsed == "kubernetes":
        problems += _kubernetes_problems()
    try:
        store()
    except Exception as exc:  # noqa: BLE001 - reported, with its text, as a problem to fix
        problems.append(f"the object store cannot be opened: {exc}")
    return problems


def _kubernetes_problems() -> list[str]:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from leader360v_airflow.pod_tasks import K8sConfigError, config

    try:
        conn_id = config().kubernetes_conn_id
    except K8sConfigError as exc:
        return [f"the Kubernetes table is invalid: {exc}"]
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        env = "AIRFLOW_CONN_" + conn_id.upper()
        return [f"kubernetes mode needs the Airflow connection {conn_id!r} (it starts the stage pods) and it does "
                f"not exist: create it (Admin -> Connections, type Kubernetes, 'In cluster configuration' on), or "
                f"set {env}='{{\"conn_type\": \"kubernetes\", \"extra\": {{\"in_cluster\": true}}}}' as the Helm "
                "values do, or switch to local mode"]
    return []


def reset_execution_mode() -> None:
    """Forget the mode read by this process (tests that change the environment)."""
    global _mode
    _mode = None


# Per-stage time limits: generous for CPU runs of long videos; a hung ffmpeg or model call
# must still end the attempt so a retry can start [docs/reference/airflow3_notes.md §1 "Pools, retries, timeouts"].
STAGE_TIMEOUTS = {
    "ingest": timedelta(minutes=30),
    "decode": timedelta(hours=1),
    "propose": timedelta(hours=1),
    "verify": timedelta(hours=1),
    "sdr": timedelta(minutes=30),
    "propagate": timedelta(hours=6),
    "refine": timedelta(hours=2),
    "qa": timedelta(hours=2),
    "validate": timedelta(minutes=30),
}
if tuple(STAGE_TIMEOUTS) != STAGE_NAMES:  # the one stage list (tasks/stages/__init__.py)
    raise AssertionError(f"STAGE_TIMEOUTS {list(STAGE_TIMEOUTS)} must follow the stage list {STAGE_NAMES}")

DEFAULT_ARGS = {
    "owner": "leader360v",
    # Transient failures (storage hiccups, a killed worker) are retried; permanent ones
    # (bad input, bad config, failed gate) fail at once (see stage_tasks.run_stage).
    "retries": int(os.environ.get("LEADER360V_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("LEADER360V_RETRY_DELAY_SECONDS", "60"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
}

# What every DAG of the project shares (leader360v_nightly, _release, _revise): no catchup of
# missed intervals (a missed night's uploads are found by the next run's data interval or a
# backfill, never by a burst of runs), one run at a time (each DAG's runs share the store's
# leases and would only wait on each other), the retry policy above. Each DAG adds its id,
# schedule, doc and tags.
DAG_POLICY = {
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}


def store_from_connection(conn):
    """An S3/MinIO store from an Airflow connection object (any conn type; see :func:`store`)."""
    from tasks.errors import ConfigError
    from tasks.storage import open_store

    extra = conn.extra_dejson or {}
    bucket = extra.get("bucket") or os.environ.get("LEADER360V_S3_BUCKET")
    if not bucket or not conn.host:
        raise ConfigError(f"connection {conn.conn_id!r} needs a host (the MinIO endpoint) and extra.bucket")
    host = f"{conn.host}:{conn.port}" if conn.port else conn.host
    url = f"s3://{bucket}" + (f"/{extra['prefix'].strip('/')}" if extra.get("prefix") else "")
    opts = {"endpoint": host, "access_key": conn.login or None, "secret_key": conn.password or None}
    for k_conn, k_store in (("secure", "secure"), ("region_name", "region"), ("public_endpoint", "public_endpoint")):
        if extra.get(k_conn) is not None:
            opts[k_store] = extra[k_conn]
    return open_store(url, **opts)


def config_overrides_schema() -> dict:
    """JSON schema of the ``config_overrides`` param, generated from the typed configuration.

    Every setting, as a dotted key (``"refine.tau"``) or nested (``{"refine": {"tau": ...}}``),
    with its type and range; nothing else (``additionalProperties: false``). The trigger form and
    the REST API refuse a typo or a wrong type before a run exists; ``discover`` checks again what
    a schema cannot express (cross-field rules), for runs created without the form's validation.
    Costs one import of ``tasks.config`` (pydantic, which Airflow has loaded already) per parse.
    """
    from tasks.config import PipelineConfig

    full = PipelineConfig.model_json_schema()
    defs = full.get("$defs", {})

    def clean(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return clean(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: clean(v) for k, v in node.items() if k not in ("title", "default")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    props: dict = {}
    for name, node in full["properties"].items():
        node = clean(node)
        props[name] = node
        for leaf, leaf_schema in (node.get("properties") or {}).items():
            props[f"{name}.{leaf}"] = leaf_schema
    # Draft 7 (what these keywords need; pydantic's tuple "prefixItems" is then not enforced --
    # discover checks it): Airflow validates every param against its schema when a DAG file is
    # parsed, and jsonschema checks the schema itself first; against the 2020-12 metaschema that
    # costs ~5x more, which would triple the nightly DAG's parse time.
    return _SharedSchema({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                          "properties": props, "additionalProperties": False})


class _SharedSchema(dict):
    """A JSON schema that is never mutated, so copies may share it: Airflow deep-copies the DAG's
    params into every task it builds (13 here), and copying this ~10 kB schema each time doubled
    the nightly DAG's parse time."""

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


def pipeline_config(overrides: dict | None = None):
    from tasks.config import PipelineConfig

    path = os.environ.get("LEADER360V_CONFIG")
    base = PipelineConfig.from_file(path) if path else PipelineConfig()
    return base.with_overrides(overrides or {})


def store():
    """The object store of the running task.

    With ``LEADER360V_STORE_CONN_ID`` set, an S3/MinIO store is built from that Airflow connection
    (host and port = endpoint, login/password = keys, extra ``bucket``, ``prefix``, ``secure``,
    ``region_name``, ``public_endpoint``); otherwise ``LEADER360V_STORE`` (+ ``LEADER360V_S3_*``).
    Only called inside tasks: a connection lookup at parse time would hit the secrets backend on
    every parse.
    """
    conn_id = os.environ.get("LEADER360V_STORE_CONN_ID")
    if conn_id:
        from airflow.sdk import BaseHook

        return store_from_connection(BaseHook.get_connection(conn_id))
    from tasks.storage import store_from_env

    return store_from_env()
