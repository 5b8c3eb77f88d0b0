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
    assert set(dagbag.dag_ids) == {"leader360v_nightly", "leader360v_release"}


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
    pub = dag.get_task("publish_ready")
    assert pub.trigger_rule == "all_done" and [o.name for o in pub.outlets] == ["leader360v_ready_videos"]


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
