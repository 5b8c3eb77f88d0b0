"""Issue 15 in Airflow: the nightly DAG's human gate (its presence, its trigger rules) and the
``leader360v_revise`` DAG (its shape, and a real ``airflow dags test`` run on corrections that
landed in the store's inbox)."""

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_nightly_has_a_deferrable_approval_gate_before_ready(dagbag):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = dagbag.dags["leader360v_nightly"]
    assert "Human gate" in dag.doc_md and "review.gate_max_flags" in dag.doc_md
    from leader360v_airflow.review_gate import ReviewGateOperator

    gate = dag.get_task("review_gate")
    # Airflow's ApprovalOperator, recording both answers in the store (tests/plugins/test_review_gate.py)
    assert gate.operator_class is ReviewGateOperator and issubclass(ReviewGateOperator, ApprovalOperator)
    assert gate.partial_kwargs.get("response_timeout") is None          # waits for a person, as long as it takes
    # the reviewer's form has a comment field (the reason shown with a rejection), as a task param
    from airflow.sdk.definitions.param import ParamsDict

    assert "comment" in ParamsDict.filter_params_by_source(gate.params, source="task")
    assert gate.upstream_task_ids == {"review_requests"}
    assert dag.get_task("review_requests").upstream_task_ids == {"summary"}
    rec = dag.get_task("record_approval")
    # Approve runs it (all_success); Reject skips it (ApprovalOperator skips its direct downstream),
    # after review_gate recorded the rejection: no asset event for a rejected video
    assert rec.upstream_task_ids == {"review_gate", "review_requests"} and rec.trigger_rule == "all_success"
    assert [o.name for o in rec.outlets] == ["leader360v_ready_videos"]
    # the run's verdict does not wait for the person: outcome stays after summary and publish_ready only
    assert dag.get_task("outcome").upstream_task_ids == {"summary", "publish_ready"}


def test_revise_dag_shape(dagbag):
    from airflow.sdk import CronTriggerTimetable

    dag = dagbag.dags["leader360v_revise"]
    assert dag.doc_md and "corrections/inbox/" in dag.doc_md and "re-follow" in dag.doc_md
    assert dag.catchup is False and dag.max_active_runs == 1
    assert isinstance(dag.timetable, CronTriggerTimetable) and dag.timetable.expression == "*/10 * * * *"
    assert dag.get_task("revise").upstream_task_ids == {"discover"}
    pub = dag.get_task("publish_ready")
    assert pub.upstream_task_ids == {"revise"} and [o.name for o in pub.outlets] == ["leader360v_ready_videos"]


@pytest.mark.slow
@pytest.mark.airflow
def test_revise_dag_imports_landed_corrections(airflow_db, labeled_tiny, tmp_path):
    from tasks.review import corrections as cmod
    from tasks.review.export import export_cvat
    from tasks.review.inbox import DONE, INBOX, REJECTED
    from tasks.stages import runner
    from tasks.storage import LocalStore

    src, vid, run, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    export_cvat(store, vid, run, tmp_path / "cvat")
    root = ET.fromstring((tmp_path / "cvat" / "annotations.xml").read_bytes())
    track = root.find("track")
    track.set("label", "bench" if track.get("label") != "bench" else "car")
    for name in ("bench", "car"):
        ET.SubElement(ET.SubElement(root.find("meta/task/labels"), "label"), "name").text = name
    store.put_bytes(f"{INBOX}{vid}/1-fix.xml", ET.tostring(root))
    bad = ET.fromstring(ET.tostring(root))
    bad.find("track").set("label", "flying saucer")
    store.put_bytes(f"{INBOX}{vid}/2-bad.xml", ET.tostring(bad))
    env = dict(os.environ, LEADER360V_STORE=str(store.root), LEADER360V_REVIEWER="ana")
    proc = subprocess.run([airflow_db, "dags", "test", "leader360v_revise"], capture_output=True, text=True,
                          env=env, timeout=900)
    assert "state=success" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    [done] = cmod.committed(store, vid)
    assert done["author"] == "ana" and runner.load_manifest(store, vid, done["revised_run"], "validate")
    assert [i.key for i in store.list(DONE)] == [f"{DONE}{vid}/{done['id']}-1-fix.xml"]
    problems = store.get_json(f"{REJECTED}{vid}/2-bad.xml.problems.json")["problems"]
    assert any("flying saucer" in p for p in problems)
    assert not any(i.key.startswith(f"{INBOX}{vid}/") for i in store.list(INBOX))   # nothing left to retry
    assert json.loads(json.dumps(done))["applies"] == [done["id"]]
