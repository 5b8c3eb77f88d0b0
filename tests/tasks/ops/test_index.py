"""The dashboard's store scan (tasks/ops/index.py): statuses from real manifests, re-reads only what
changed (manifest time), survives a restart through its index file, never blocks a warm reader."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tasks import layout
from tasks.ops.index import REVIEWS, STATUS_LABELS, OpsCache, OpsIndex, index_path, summarize
from tasks.review import approval
from tasks.storage import LocalStore
from tests.support.stores import copy_store


@pytest.fixture
def store(labeled_tiny, tmp_path):
    """A private copy of the labeled tiny clip's store (tests here modify it)."""
    src, vid, run, _ = labeled_tiny
    return copy_store(src, tmp_path / "store"), vid, run


def _touch_later(path, seconds=5):
    st = os.stat(path)
    os.utime(path, (st.st_atime + seconds, st.st_mtime + seconds))


def test_a_labeled_video_with_flags_and_no_gate_is_ready_with_its_flags_and_timings(store):
    s, vid, run = store
    idx = OpsIndex(s).refresh()
    v = idx.videos[vid]
    qa = s.get_json(layout.manifest_key(vid, run, "qa"))
    assert sum(qa["stats"]["flags"].values()) > 0
    # no gate configured (review.gate_max_flags None): the release takes it, so it is not held
    assert not approval.needs_review(s, vid, run) and v.status() == "ready"
    assert v.newest_run.run == run and v.newest_run.flags == qa["stats"]["flags"]
    assert v.key == s.get_json(layout.source_key(vid))["key"]
    assert set(v.newest_run.stages) == set(layout_stages())
    # every stage's seconds read from its manifest (one video: within the newest-N window)
    for stage, (_mtime, secs) in v.newest_run.stages.items():
        assert secs == pytest.approx(s.get_json(layout.manifest_key(vid, run, stage))["seconds"])


def _set_review(s, vid, run, **review):
    key = layout.run_config_key(vid, run)
    cfg = s.get_json(key)
    cfg.setdefault("review", {}).update(review)
    s.put_json(key, cfg)


def test_the_status_is_the_human_gates(store):
    """waiting for review only while the gate holds the run; approved/rejected from decision.json,
    re-read when its time changes; a revision from a person's corrections is revised."""
    s, vid, run = store
    n = approval.flag_count(s, vid, run)
    _set_review(s, vid, run, gate_max_flags=n)            # exactly at the limit: not held
    assert not approval.needs_review(s, vid, run)
    assert OpsIndex(s).refresh().videos[vid].status() == "ready"
    _set_review(s, vid, run, gate_max_flags=n - 1)        # one flag over: the gate holds it
    assert approval.needs_review(s, vid, run)
    idx = OpsIndex(s).refresh()
    assert idx.videos[vid].status() == "review"
    assert summarize(idx).status_of()[vid] == "review" and STATUS_LABELS["review"] == "waiting for review"
    idx.refresh()
    assert idx.reads == 0                                 # the run's settings are kept, not re-read
    approval.record_decision(s, vid, run, approved=False, by="ana", at="2026-11-28T08:00:00+00:00")
    idx.refresh()
    assert idx.videos[vid].status() == "rejected" and idx.reads == 1
    assert approval.human_review(s, vid, run) == (False, None)
    key = approval.review_prefix(vid, run) + "decision.json"
    approval.record_decision(s, vid, run, approved=True, by="bo", at="2026-11-28T09:00:00+00:00")
    _touch_later(s.path(key))                             # a new decision within the same second still counts
    idx.refresh()
    v = idx.videos[vid]
    assert v.status() == "approved" and approval.human_review(s, vid, run)[0]
    assert (v.newest_run.decision["by"], v.newest_run.decision["at"]) == ("bo", "2026-11-28T09:00:00+00:00")
    # the decision survives a restart (index file) without a re-read
    again = OpsIndex(s)
    again.load_json(json.loads(json.dumps(idx.to_json())))
    again.refresh()
    assert again.reads == 0 and again.videos[vid].status() == "approved"


def test_a_revised_run_is_revised(store):
    s, vid, run = store
    rev = "0123456789ab"
    _set_review(s, vid, run, gate_max_flags=0)
    shutil.copytree(s.path(layout.run_prefix(vid, run)), s.path(layout.run_prefix(vid, rev)))
    _set_review(s, vid, rev, revision_of=run, corrections=["c1"])
    for stage in layout_stages():                          # the revision is the newer run
        _touch_later(s.path(layout.manifest_key(vid, rev, stage)), 60)
    v = OpsIndex(s).refresh().videos[vid]
    assert v.newest_run.run == rev and v.status() == "revised"
    assert approval.human_review(s, vid, rev)[0] and not approval.needs_review(s, vid, rev)
    assert v.runs[run].gate_status() == "review"           # the original still needed a person


def test_reviews_prefix_is_the_gates():
    assert REVIEWS == approval.REVIEWS


def layout_stages():
    from tasks.stages import STAGE_NAMES

    return STAGE_NAMES


def test_a_half_written_stage_does_not_count(store):
    s, vid, run = store
    s.delete(layout.manifest_key(vid, run, "validate"))   # outputs there, manifest not: not committed
    s.put_json(layout.stage_prefix(vid, run, "validate") + "gx_report.json", {"partial": True})
    v = OpsIndex(s).refresh().videos[vid]
    assert "validate" not in v.newest_run.stages and v.status() == "in_progress"


def test_rescan_rereads_only_manifests_whose_time_changed(store):
    s, vid, run = store
    idx = OpsIndex(s).refresh()
    assert idx.reads > 0
    idx.refresh()
    assert idx.reads == 0                      # nothing changed: stats only
    key = layout.manifest_key(vid, run, "qa")
    m = s.get_json(key)
    m["stats"]["flags"] = {}                   # a reviewer's re-run cleared every flag
    s.put_json(key, m)
    _touch_later(s.path(key))
    idx.refresh()
    assert idx.reads == 1                      # the new qa manifest only (flags and seconds in one read)
    assert idx.videos[vid].status() == "ready"


def test_an_older_pipelines_manifest_is_read_without_stats_or_seconds(store):
    s, vid, run = store
    for stage in layout_stages():
        key = layout.manifest_key(vid, run, stage)
        m = s.get_json(key)
        for k in ("stats", "seconds", "config_hash", "code_version", "keys"):
            m.pop(k, None)
        s.put_json(key, m)
    idx = OpsIndex(s).refresh()
    v = idx.videos[vid]
    assert v.status() == "ready"               # no flags recorded: nothing to review
    secs = v.newest_run.stages["propagate"][1]
    m = s.get_json(layout.manifest_key(vid, run, "propagate"))
    assert secs is not None and secs >= 0      # from started/finished


def test_quarantined_and_unknown_folders(store):
    s, vid, run = store
    other = "0123456789abcdef"
    s.put_json(layout.quarantine_key(other), {"video_id": other, "reason": "truncated", "message": "cut off"})
    s.put_json("videos/not-a-video-id/source.json", {})
    idx = OpsIndex(s).refresh()
    assert set(idx.videos) == {vid, other}
    assert idx.videos[other].status() == "quarantined" and idx.videos[other].quarantine["reason"] == "truncated"


def test_empty_store(tmp_path):
    idx = OpsIndex(LocalStore(tmp_path)).refresh()
    assert idx.videos == {} and idx.scanned_at is not None


def test_a_restarted_process_answers_from_the_summary_file_and_refreshes_in_the_background(store, tmp_path):
    s, vid, run = store
    first = OpsCache(s, cache_dir=tmp_path / "cache", refresh_s=3600)
    summary = first.get_summary()
    assert index_path(tmp_path / "cache", s, "index").is_file()
    assert index_path(tmp_path / "cache", s, "summary").is_file()
    assert summary.status_of()[vid] == first.index.videos[vid].status()
    restarted = OpsCache(s, cache_dir=tmp_path / "cache", refresh_s=0.0)
    again = restarted.get_summary()            # from the file: no scan, no manifest read
    assert again.rows == summary.rows and restarted.index.scanned_at is None
    assert restarted.refresh_if_stale()        # stale at once (refresh_s=0): a background scan
    restarted.wait()
    assert restarted.error is None and restarted.index.reads == 0   # the index file made it incremental
    assert restarted.summary.scanned_at >= summary.scanned_at
    fresh = OpsCache(s, cache_dir=tmp_path / "cache", refresh_s=3600)
    fresh.get_summary()
    assert not fresh.refresh_if_stale()        # a summary younger than refresh_s is not rescanned


def test_a_change_shows_after_the_background_refresh(store, tmp_path):
    s, vid, run = store
    c = OpsCache(s, cache_dir=tmp_path / "cache", refresh_s=0.0)
    assert c.get_summary().status_of()[vid] in ("ready", "review")
    s.delete(layout.manifest_key(vid, run, "validate"))
    assert c.get_summary().status_of()[vid] in ("ready", "review")   # the page never waits for a scan
    c.refresh_if_stale()
    c.wait()
    assert c.get_summary().status_of()[vid] == "in_progress"


def test_an_index_file_of_another_store_or_version_is_ignored(store, tmp_path):
    s, vid, _ = store
    for kind in ("index", "summary"):
        path = index_path(tmp_path / "c", s, kind)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"version": 0, "store": s.uri(), "rows": [], "videos": {}}))
    c = OpsCache(s, cache_dir=tmp_path / "c")
    assert vid in c.get_summary().status_of()     # rescanned, not the stale files
    for kind in ("index", "summary"):
        index_path(tmp_path / "c", s, kind).write_text("{broken")
    assert vid in OpsCache(s, cache_dir=tmp_path / "c").get_summary().status_of()


def test_an_unreachable_store_is_an_error_not_an_exception(tmp_path):
    from tasks.storage import open_store

    s = open_store("s3://leader360v?endpoint=127.0.0.1:9&secure=false", access_key="a", secret_key="b", retries=0)
    c = OpsCache(s, cache_dir=tmp_path)
    assert c.get_summary() is None and "127.0.0.1:9" in c.error
