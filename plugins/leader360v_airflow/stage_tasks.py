"""The stage-task factory: one Airflow task per pipeline stage, same graph in every mode.

``stage_task(stage)`` returns a callable that takes the upload's key (ingest) or the previous
stage's output and returns this stage's output, so a DAG file wires the chain the same way in
both modes (:func:`settings.execution_mode`):

* ``local``: a TaskFlow task running the stage function in the worker (the same code as
  ``python -m tasks <stage>``);
* ``kubernetes``: a pod running ``python -m tasks <stage>`` in the task image
  (:mod:`leader360v_airflow.pod_tasks`, imported only in this mode); same task ids, same
  dependencies, same manifest in XCom, the same outcomes for the errors below.

Errors become Airflow outcomes by what the error class says of itself (``exit_code`` and
``retryable`` in :mod:`tasks.errors`, the same attributes the CLI's exit codes and the pod
exit-code mapping read), see :func:`airflow_outcome`:

* skip (:class:`~tasks.errors.DuplicateVideo`: recognised, deliberately not labeled twice);
* fail without retry (every other :class:`~tasks.errors.PermanentError`: rejected input --
  already quarantined with its reason --, bad configuration, failed quality gate);
* anything else: failed, retried per ``retries``.

A stage task returns the stage's small JSON manifest (URIs and stats), which is what XCom holds.
"""

from __future__ import annotations

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from leader360v_airflow import settings
from tasks.stages import STAGE_NAMES

# the one stage list (tasks/stages/__init__.py); importing it loads nothing heavy
STAGE_ORDER = STAGE_NAMES


def airflow_outcome(exc: BaseException) -> BaseException | None:
    """The Airflow exception for a pipeline error, from the error's own class attributes, or
    ``None`` when the error should propagate as it is (retryable, or not one of ours)."""
    from tasks.errors import PipelineError, exit_outcome

    if not isinstance(exc, PipelineError):
        return None
    if exit_outcome(exc.exit_code).outcome == "skip":
        return AirflowSkipException(str(exc))
    if not exc.retryable:
        return AirflowFailException(f"{exc.label}: {exc}")
    return None


def run_stage(stage: str, *, key: str | None = None, previous: dict | None = None) -> dict:
    """Run one stage under the contract with the DAG run's params; map errors for Airflow."""
    from tasks.stages.runner import execute

    ctx = get_current_context()
    params = ctx["params"]
    force = bool(params.get("force", False))
    video_key = key if key is not None else (previous or {}).get("key")
    ctx["video_label"] = video_key or ""  # shown as the mapped instance's name in the UI
    try:
        # inside the try: a bad configuration is permanent and must not be retried per video
        config = settings.pipeline_config(params.get("config_overrides") or {})
        store = settings.store()
        if stage == "ingest":
            res = execute("ingest", store=store, config=config, params={"key": key}, force=force)
        else:
            if previous is None:
                raise AirflowFailException(f"stage {stage} needs the result of the previous stage")
            if previous.get("run") != config.hash:
                raise AirflowFailException(
                    f"configuration changed within the run: upstream used {previous.get('run')}, now {config.hash}")
            res = execute(stage, store=store, config=config, video_id=previous["video_id"], force=force)
    except Exception as exc:
        mapped = airflow_outcome(exc)
        if mapped is None:
            raise
        raise mapped from exc
    out = res.to_json()
    out["key"] = video_key
    return out


def mapped_results(values) -> list:
    """The outputs of a mapped task group as a list, whatever Airflow hands over.

    Airflow 3.3.2 collapses the outputs of a mapped task group to the bare value when exactly
    one expansion produced one (and to None when none did): apache/airflow#69036, fixed by
    #69075 in a later release. A dict is one result; None is no result.
    """
    if values is None:
        return []
    if isinstance(values, dict):
        return [values]
    return [v for v in values if v]


def stage_task(stage: str):
    """The task for ``stage`` in the configured execution mode, with its timeout and a readable
    mapped-instance name."""
    if stage not in STAGE_ORDER:
        raise ValueError(f"unknown stage {stage!r}")
    if settings.execution_mode() == "kubernetes":
        from leader360v_airflow.pod_tasks import stage_pod_task

        return stage_pod_task(stage)

    if stage == "ingest":
        @task(task_id=stage, execution_timeout=settings.STAGE_TIMEOUTS[stage], map_index_template="{{ video_label }}")
        def ingest(key: str) -> dict:
            return run_stage("ingest", key=key)

        return ingest

    @task(task_id=stage, execution_timeout=settings.STAGE_TIMEOUTS[stage], map_index_template="{{ video_label }}")
    def _stage(previous: dict) -> dict:
        return run_stage(stage, previous=previous)

    return _stage


def worker_executor_config(name: str) -> dict:
    """``executor_config`` of an Airflow task that stays a worker task in both modes.

    In kubernetes mode its worker pod gets the ``worker_pods.<name>`` row of the pod table
    (honoured by the KubernetesExecutor, ignored by other executors); in local mode nothing.
    """
    if settings.execution_mode() != "kubernetes":
        return {}
    from leader360v_airflow.pod_tasks import worker_pod_override

    return {"pod_override": worker_pod_override(name)}
