"""The human gate's bookkeeping: a run with more QA flags than the DAG run's configuration lets
through is held out of the release until a person approves it (or corrects it); a rejection is
recorded with who, when and why and keeps the video out until a revision; the gate's request
carries the checker's summary and links; the release rows say who reviewed what."""

import xml.etree.ElementTree as ET

import pytest

from tasks import layout
from tasks.review import approval
from tasks.review.revise import import_corrections
from tasks.stages.release import ready_videos
from tests.support.stores import copy_store


@pytest.fixture
def labeled(labeled_tiny, tmp_path):
    """A private copy of the labeled tiny clip (these tests record decisions in it)."""
    src, vid, run, _ = labeled_tiny
    return copy_store(src, tmp_path / "store"), vid, run


def test_flagged_run_is_held_until_approved(labeled):
    store, vid, run = labeled
    n = approval.flag_count(store, vid, run)
    assert n > 0 and approval.needs_review(store, vid, run, 0) and not approval.needs_review(store, vid, run)
    assert approval.apply_gate(store, vid, run, n) == "ready"          # at the limit: not held
    assert approval.apply_gate(store, vid, run, 0) == "held"
    rec = approval.gate_record(store, vid, run)
    assert (rec["decision"], rec["gate_max_flags"], rec["flags"]) == ("pending", 0, n)
    assert approval.decision(store, vid, run) is None                  # nobody decided yet
    assert [r["video_id"] for r in ready_videos(store)] == []          # the run waits at the gate
    assert approval.human_review(store, vid, run) == (False, None)
    approval.record_decision(store, vid, run, approved=True, by="ana", at="2026-11-28T08:00:00+00:00")
    [row] = ready_videos(store)
    assert row["run"] == run and row["human_review"] == "approved by ana at 2026-11-28T08:00:00+00:00"
    assert "human-reviewed: approved by ana" in row["why"] and approval.human_reviewed_count([row]) == 1
    assert approval.apply_gate(store, vid, run, 0) == "approved"       # a nightly re-run does not ask again


def test_rejection_is_recorded_and_holds_the_video_until_a_revision(labeled):
    store, vid, run = labeled
    approval.apply_gate(store, vid, run, 0)
    rec = approval.record_decision(store, vid, run, approved=False, by="bo", at="2026-11-28T09:00:00+00:00",
                                   note="  the bench is labeled car  ")
    assert approval.decision(store, vid, run) == rec == store.get_json(approval.review_prefix(vid, run) + "decision.json")
    assert (rec["decision"], rec["by"], rec["at"], rec["note"]) == ("rejected", "bo", "2026-11-28T09:00:00+00:00",
                                                                   "the bench is labeled car")
    assert rec["gate_max_flags"] == 0 and rec["flags"] == approval.flag_count(store, vid, run)   # kept from the hold
    assert ready_videos(store) == [] and approval.human_review(store, vid, run) == (False, None)
    # a later nightly run keeps the person's verdict, whatever its limit: not asked again, not released
    assert approval.apply_gate(store, vid, run, None) == "rejected" == approval.apply_gate(store, vid, run, 0)
    assert ready_videos(store) == []
    # the person's corrections make a revision: released, as human-reviewed
    r = import_corrections(store, vid, _relabeled_first_track(store, vid, run), source_name="fix.xml", run=run)
    [row] = ready_videos(store)
    assert row["run"] == r.run and row["human_review"].startswith("corrected by a person (1 correction")


def test_a_laxer_configuration_releases_a_held_run(labeled):
    """The limit is the DAG run's: a later run of the nightly DAG with a higher limit (or none)
    lets the video through, removing the pending record; a person's decision is never removed."""
    store, vid, run = labeled
    assert approval.apply_gate(store, vid, run, 0) == "held" and ready_videos(store) == []
    assert approval.apply_gate(store, vid, run, None) == "ready"
    assert approval.gate_record(store, vid, run) is None and [r["run"] for r in ready_videos(store)] == [run]


def test_a_run_recorded_with_its_limit_in_config_json_is_still_held(labeled):
    """Runs made while gate_max_flags named the run carry it in config.json: still gated by it."""
    store, vid, run = labeled
    key = layout.run_config_key(vid, run)
    cfg = store.get_json(key)
    cfg["review"]["gate_max_flags"] = 0
    store.put_json(key, cfg)
    assert approval.needs_review(store, vid, run) and approval.human_review(store, vid, run) == (False, None)
    assert ready_videos(store) == []
    assert approval.apply_gate(store, vid, run, None) == "held"
    assert approval.gate_record(store, vid, run)["gate_max_flags"] == 0


def test_gate_request_has_summary_comments_and_links(labeled):
    store, vid, run = labeled
    req = approval.gate_request(store, vid, run, 0)
    assert req["subject"] == f"Review video {vid} (run {run}): {req['flags']} QA flags"
    body = req["body"]
    assert "comment(s) on video" in body and "label unknown for track" in body
    assert "more than the 0 flag(s)" in body and "say why in the comment" in body
    assert "CVAT task (annotations.xml, CVAT for video 1.1): " + str(store.path(req["cvat"])) in body
    assert f"python -m tasks review import FILE --video-id {vid} --run {run}" in body
    assert store.get_bytes(req["cvat"]).startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<annotations>')


def _relabeled_first_track(store, vid, run) -> bytes:
    """The gate's CVAT export with its first track's class changed: a person's correction."""
    root = ET.fromstring(store.get_bytes(approval.gate_request(store, vid, run, 0)["cvat"]))
    first = root.find("track")
    first.set("label", "bench" if first.get("label") != "bench" else "car")
    labels = root.find("meta/task/labels")
    for name in ("bench", "car"):
        ET.SubElement(ET.SubElement(labels, "label"), "name").text = name
    return ET.tostring(root)


def test_unflagged_and_corrected_runs_are_released(labeled):
    store, vid, run = labeled
    assert approval.human_review(store, vid, run) == (True, None)       # no gate configured
    r = import_corrections(store, vid, _relabeled_first_track(store, vid, run), source_name="fix.xml", run=run)
    ok, how = approval.human_review(store, vid, r.run)
    assert ok and how == f"corrected by a person (1 correction re-followed from run {run})"
    [row] = ready_videos(store)
    assert row["run"] == r.run and row["human_review"] == how
