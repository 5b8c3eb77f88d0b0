"""DAG files: they import, they are the DAGs we expect, and they are cheap to parse."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
HEAVY = ["torch", "cv2", "great_expectations", "skimage", "sklearn", "transformers", "sentence_transformers",
         "pycocotools", "sam2", "scipy", "pandas"]


@pytest.fixture(scope="module")
def dagbag():
    # DagBag(include_examples=...) raises TypeError on Airflow 3.3 (apache/airflow#70283); examples
    # are off through AIRFLOW__CORE__LOAD_EXAMPLES (tests/conftest.py) instead.
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors_and_expected_ids(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"leader360v_nightly", "leader360v_release", "leader360v_revise"}


def test_nightly_shape(dagbag):
    dag = dagbag.dags["leader360v_nightly"]  # no DB needed
    assert dag.doc_md and "quarantine" in dag.doc_md
    assert dag.catchup is False and dag.max_active_runs == 1
    from airflow.sdk import CronTriggerTimetable

    assert isinstance(dag.timetable, CronTriggerTimetable) and dag.timetable.expression == "0 2 * * *" and dag.timetable.interval.days == 1
    assert {"keys", "prefix", "force", "config_overrides"} <= set(dag.params)
    stages = ["ingest", "decode", "propose", "verify", "sdr", "propagate", "refine", "qa", "validate"]
    for s in stages:
        t = dag.get_task(f"video.{s}")
        assert t.retries >= 2 and t.execution_timeout is not None and t.execution_timeout > timedelta(0)
    # the stages are chained in order inside the mapped group
    for a, b in zip(stages, stages[1:]):
        assert f"video.{b}" in dag.get_task(f"video.{a}").downstream_task_ids
    # the summary runs whatever happened; the asset event and the run's verdict come after it
    assert dag.get_task("summary").trigger_rule == "all_done"
    assert {"video.validate", "discover"} <= dag.get_task("summary").upstream_task_ids
    pub = dag.get_task("publish_ready")
    assert [o.name for o in pub.outlets] == ["leader360v_ready_videos"]
    out = dag.get_task("outcome")
    assert out.trigger_rule == "none_failed" and out.upstream_task_ids == {"summary", "publish_ready"}
    assert out.downstream_task_ids == set()                  # the leaf: its state is the run's state
    # every stage task is named by its upload in the UI
    for s in stages:
        assert dag.get_task(f"video.{s}").map_index_template == "{{ video_label }}"


def test_trigger_form_refuses_unknown_settings_and_wrong_types(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    params = dagbag.dags["leader360v_nightly"].params
    p = params.get_param("config_overrides")
    assert p.resolve({"refine.tau": 0.004, "video": {"fps": 10}}) == {"refine.tau": 0.004, "video": {"fps": 10}}
    for bad, words in [({"refine.tua": 0.004}, "'refine.tua' was unexpected"),
                       ({"refine.tau": "small"}, "'small' is not of type 'number'"),
                       ({"refine": {"tua": 1}}, "'tua' was unexpected"),
                       ({"video.fps": 0}, "less than or equal to the minimum")]:
        with pytest.raises(ParamValidationError, match=words):
            p.resolve(bad)
    with pytest.raises(ParamValidationError):
        params.get_param("keys").resolve(["videos/x.mp4"])      # uploads live under raw/
    with pytest.raises(ParamValidationError):
        params.get_param("prefix").resolve("videos/")


def test_the_overrides_schema_knows_every_setting():
    from leader360v_airflow import settings
    from tasks.config import PipelineConfig

    props = settings.config_overrides_schema()["properties"]
    for section, values in PipelineConfig().model_dump(mode="json").items():
        assert section in props
        if isinstance(values, dict):
            assert {f"{section}.{k}" for k in values} <= set(props)


def test_a_wrong_execution_variable_is_an_import_error_naming_the_fix():
    code = ("import json, sys; from airflow.dag_processing.dagbag import DagBag; "
            f"b = DagBag(dag_folder={str(DAGS)!r}); print(json.dumps(b.import_errors))")
    env = dict(os.environ, PYTHONPATH=str(DAGS.parent / "plugins"), AIRFLOW_VAR_LEADER360V_EXECUTION="celery")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    errors = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(errors) == 2
    for text in errors.values():
        assert "leader360v_execution='celery' is not an execution mode: set it to local or kubernetes" in text


def test_release_shape(dagbag):
    dag = dagbag.dags["leader360v_release"]
    assert dag.doc_md and "nothing is published" in " ".join(dag.doc_md.replace("**", "").split())
    assert dag.catchup is False and dag.max_active_runs == 1
    assert "leader360v_ready_videos" in repr(dag.timetable.asset_condition)
    assert {"candidate", "quality_gate", "publish"} <= set(dag.task_ids)
    assert "quality_gate" in dag.get_task("candidate").downstream_task_ids
    assert "publish" in dag.get_task("quality_gate").downstream_task_ids


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_parsing_is_light(dag_file):
    """The dag-processor must not import the labeling engine's heavy libraries."""
    code = (
        "import json, runpy, sys, time; t = time.perf_counter(); "
        f"runpy.run_path({str(DAGS / dag_file)!r}); "
        f"print(json.dumps({{'seconds': time.perf_counter() - t, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    env = dict(os.environ, PYTHONPATH=str(DAGS.parent / "plugins"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["heavy"] == []
    assert res["seconds"] < 10
