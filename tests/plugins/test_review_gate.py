"""The nightly DAG's human gate records the person's answer (plugins/leader360v_airflow/review_gate.py):
both Approve and Reject, with who, when and the reviewer's comment, in the store where the release
and the ops dashboard read it -- Reject included, although Airflow then skips the gate's downstream
tasks. Driven through the operator's real resume path (``execute_complete`` with the event Airflow
delivers when a person answers)."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest

from tasks.ops.index import OpsIndex, summarize
from tasks.review import approval
from tasks.stages.release import ready_videos
from tests.support.stores import copy_store

AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def held(labeled_tiny, tmp_path, monkeypatch):
    """A private copy of the labeled tiny clip, held by the gate (limit 0); the plugin's store."""
    src, vid, run, _ = labeled_tiny
    store = copy_store(src, tmp_path / "store")
    monkeypatch.setenv("LEADER360V_STORE", str(store.root))
    monkeypatch.delenv("LEADER360V_STORE_CONN_ID", raising=False)
    assert approval.apply_gate(store, vid, run, 0) == "held"
    return store, vid, run


def _gate_with_downstream(vid, run):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    from leader360v_airflow.review_gate import ReviewGateOperator

    with DAG("gate_test", schedule=None):
        gate = ReviewGateOperator(task_id="review_gate", subject="Review", body="body", video_id=vid, run=run)
        gate >> EmptyOperator(task_id="record_approval")
    return gate


def _answer(option, comment="", user=None):
    return {"chosen_options": [option], "params_input": {"comment": comment}, "responded_at": AT,
            "responded_by_user": user if user is not None else {"id": "7", "name": "ana"}}


def test_the_gate_has_a_comment_field_for_the_reviewer(held):
    _, vid, run = held
    gate = _gate_with_downstream(vid, run)
    assert gate.options == ["Approve", "Reject"] and "comment" in gate.serialized_params
    assert gate.serialized_params["comment"]["value"] == ""


def test_reject_is_recorded_with_the_reason_and_skips_downstream(held):
    store, vid, run = held
    gate = _gate_with_downstream(vid, run)
    ti = mock.Mock(map_index=0)                       # a mapped gate: skips go through the skipmixin XCom
    ret = gate.execute_complete({"task": gate, "ti": ti}, _answer("Reject", " bench labeled as car "))
    assert ret["chosen_options"] == ["Reject"]
    ti.xcom_push.assert_called_once_with(key="skipmixin_key", value={"skipped": ["record_approval"]})
    rec = approval.decision(store, vid, run)
    assert (rec["decision"], rec["by"], rec["at"], rec["note"]) == ("rejected", "ana", AT.isoformat(),
                                                                   "bench labeled as car")
    assert rec["gate_max_flags"] == 0                  # the limit it was held under
    assert ready_videos(store) == []                   # out of the release until a revision
    idx = OpsIndex(store).refresh()                   # the ops dashboard: rejected, with the reason
    assert idx.videos[vid].status() == "rejected"
    [row] = summarize(idx).rows
    assert row[1] == "rejected" and row[6] == "bench labeled as car"


def test_approve_is_recorded_and_the_video_is_released(held):
    store, vid, run = held
    gate = _gate_with_downstream(vid, run)
    ti = mock.Mock(map_index=0)
    gate.execute_complete({"task": gate, "ti": ti}, _answer("Approve", user={"id": "bo", "name": ""}))
    ti.xcom_push.assert_not_called()                   # downstream (record_approval) runs
    rec = approval.decision(store, vid, run)
    assert (rec["decision"], rec["by"], rec["note"]) == ("approved", "bo", None)
    [row] = ready_videos(store)
    assert row["human_review"] == f"approved by bo at {AT.isoformat()}"


def test_an_answer_airflow_reports_as_an_error_records_nothing(held):
    from airflow.providers.standard.exceptions import HITLTimeoutError

    store, vid, run = held
    gate = _gate_with_downstream(vid, run)
    with pytest.raises(HITLTimeoutError):
        gate.execute_complete({"task": gate, "ti": mock.Mock(map_index=0)},
                              {"error": "timed out", "error_type": "timeout"})
    assert approval.gate_record(store, vid, run)["decision"] == "pending"   # still held, nothing decided


def test_an_option_the_gate_does_not_offer_records_nothing(held):
    store, vid, run = held
    gate = _gate_with_downstream(vid, run)
    with pytest.raises(ValueError, match="not in"):
        gate.execute_complete({"task": gate, "ti": mock.Mock(map_index=0)}, _answer("Maybe"))
    assert approval.decision(store, vid, run) is None


def test_a_retry_after_the_answer_was_recorded_completes_from_the_record(held):
    """Airflow 3.3 can fail the resumed gate on a stale executor event after the answer was recorded
    (apache/airflow#72716): the retry must not ask the person again -- it completes from the
    record (Reject: downstream skipped again), and records nothing new."""
    store, vid, run = held
    gate = _gate_with_downstream(vid, run)
    gate.execute_complete({"task": gate, "ti": mock.Mock(map_index=0)}, _answer("Reject", "bench labeled as car"))
    before = approval.decision(store, vid, run)
    retry = _gate_with_downstream(vid, run)
    ti = mock.Mock(map_index=0)
    with mock.patch("airflow.providers.standard.operators.hitl.HITLOperator.execute") as ask:
        ret = retry.execute({"task": retry, "ti": ti})
    ask.assert_not_called()                                # nobody is asked again
    assert ret["chosen_options"] == ["Reject"] and ret["params_input"] == {"comment": "bench labeled as car"}
    ti.xcom_push.assert_called_once_with(key="skipmixin_key", value={"skipped": ["record_approval"]})
    assert approval.decision(store, vid, run) == before


def test_a_gate_without_a_recorded_answer_asks_the_person(held):
    store, vid, run = held
    gate = _gate_with_downstream(vid, run)
    with mock.patch("airflow.providers.standard.operators.hitl.HITLOperator.execute") as ask:
        gate.execute({"task": gate, "ti": mock.Mock(map_index=0)})
    ask.assert_called_once()
    assert approval.gate_record(store, vid, run)["decision"] == "pending"
