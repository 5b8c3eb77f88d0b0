"""The human gate's bookkeeping: a run with more QA flags than its configuration lets through is
held out of the release until a person approves it (or corrects it); the gate's request carries
the checker's summary and links; the release rows say who reviewed what."""

import shutil
import xml.etree.ElementTree as ET

import pytest

from tasks.config import PipelineConfig
from tasks.review import approval
from tasks.review.revise import import_corrections
from tasks.stages import runner
from tasks.stages.release import ready_videos
from tasks.storage import LocalStore


@pytest.fixture(scope="module")
def gated(labeled_tiny, tmp_path_factory):
    """The tiny clip labeled again with review.gate_max_flags=0: every flag needs a person."""
    store, vid, _, _ = labeled_tiny
    root = tmp_path_factory.mktemp("gated") / "store"
    shutil.copytree(store.root, root)
    store = LocalStore(root)
    cfg = PipelineConfig().with_overrides({"review.gate_max_flags": 0})
    runner.run_chain(store=store, config=cfg, key="raw/tiny.mp4", progress=False)
    return store, vid, cfg.hash


def test_flagged_run_is_held_until_approved(gated):
    store, vid, run = gated
    assert approval.flag_count(store, vid, run) > 0 and approval.needs_review(store, vid, run)
    assert [r["video_id"] for r in ready_videos(store)] == []          # newest run waits at the gate
    assert approval.human_review(store, vid, run) == (False, None)
    approval.record_decision(store, vid, run, approved=True, by="ana", at="2026-11-28T08:00:00+00:00")
    [row] = ready_videos(store)
    assert row["run"] == run and row["human_review"] == "approved by ana at 2026-11-28T08:00:00+00:00"
    assert "human-reviewed: approved by ana" in row["why"] and approval.human_reviewed_count([row]) == 1
    approval.record_decision(store, vid, run, approved=False, by="bo")
    assert ready_videos(store) == []                                   # a rejection holds it again


def test_gate_request_has_summary_comments_and_links(gated):
    store, vid, run = gated
    req = approval.gate_request(store, vid, run)
    assert req["subject"] == f"Review video {vid} (run {run}): {req['flags']} QA flags"
    body = req["body"]
    assert "comment(s) on video" in body and "label unknown for track" in body
    assert "CVAT task (annotations.xml, CVAT for video 1.1): " + str(store.path(req["cvat"])) in body
    assert f"python -m tasks review import FILE --video-id {vid} --run {run}" in body
    assert store.get_bytes(req["cvat"]).startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<annotations>')


def test_unflagged_and_corrected_runs_are_released(gated, labeled_tiny):
    store, vid, run = gated
    _, _, plain, _ = labeled_tiny
    assert approval.human_review(store, vid, plain) == (True, None)     # no gate configured
    xml = store.get_bytes(approval.gate_request(store, vid, run)["cvat"])   # what the gate linked to
    root = ET.fromstring(xml)
    first = root.find("track")
    first.set("label", "bench" if first.get("label") != "bench" else "car")
    labels = root.find("meta/task/labels")
    for name in ("bench", "car"):
        el = ET.SubElement(labels, "label")
        ET.SubElement(el, "name").text = name
    r = import_corrections(store, vid, ET.tostring(root), source_name="fix.xml", run=run)
    ok, how = approval.human_review(store, vid, r.run)
    assert ok and how == f"corrected by a person (1 correction re-followed from run {run})"
    [row] = ready_videos(store)
    assert row["run"] == r.run and row["human_review"] == how
