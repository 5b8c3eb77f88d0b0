"""Issue 12, point 1: a settings mistake must not quarantine a good video, a published video is
never dropped by a later release, and a quarantine can be listed and undone.

Each test follows the issue's scenario on a real tiny clip (tests/conftest.py ``tiny_clip``)
through the command line a user types.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest

from tasks import discovery, layout
from tasks.cli import main
from tasks.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, InputRejected
from tasks.quarantine import NotQuarantined, list_quarantined, release_history, release_quarantine
from tasks.stages import release
from tasks.stages.ingest import content_id
from tasks.stages.runner import quarantine
from tasks.storage import LocalStore
from tests.support.videos import pattern_video, truncate


def _cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _json_out(out: str):
    """The JSON document a command printed (label prints paths after it)."""
    return json.JSONDecoder().raw_decode(out.lstrip())[0]


def _runs(store, vid) -> list[str]:
    return [p.rstrip("/").rsplit("/", 1)[-1] for p in store.list_prefixes(layout.video_prefix(vid) + "runs/")]


def test_a_settings_mistake_never_quarantines_nor_unpublishes_a_good_video(tiny_clip, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    shutil.copy(tiny_clip / "clip.mp4", clip)
    out, s = tmp_path / "labels", tmp_path / "store"
    store = LocalStore(s)
    vid, _ = content_id(clip)
    rc, text, _ = _cli(capsys, "label", clip, "--out", out, "--store", s, "--no-progress")
    assert rc == EXIT_OK
    run = _json_out(text)["run"]
    rc, text, _ = _cli(capsys, "release", "--store", s)
    assert rc == EXIT_OK and _json_out(text)["version"] == 1

    # "label clip.mp4 --store S --set video.max_seconds=1 (or --fps 1e-9) quarantines the video
    # under its content id": now a configuration error, exit 2, one line naming the setting and
    # its fix, nothing quarantined and no run of that configuration started
    for bad, names in ((["--set", "video.max_seconds=1"], "video.max_seconds=1"),
                       (["--fps", "1e-9"], "video.fps=1e-09")):
        rc, _, err = _cli(capsys, "label", clip, "--out", out, "--store", s, "--no-progress", *bad)
        assert rc == EXIT_USAGE and names in err and "nothing was quarantined" in err and "Traceback" not in err
        assert list_quarantined(store) == [] and not store.exists(layout.quarantine_key(vid))
        assert _runs(store, vid) == [run]  # nothing of the bad configuration was committed
    # the stage command a pod runs says the same
    rc, _, err = _cli(capsys, "ingest", "--key", f"raw/label/{vid}/clip.mp4", "--store", s,
                      "--set", "video.max_seconds=1")
    assert rc == EXIT_USAGE and list_quarantined(store) == []

    # "the next release drops a video that was already published": it names v1, publishes nothing
    rc, text, _ = _cli(capsys, "release", "--store", s)
    assert rc == EXIT_OK and _json_out(text)["version"] == 1 and _json_out(text)["unchanged"] is True
    assert release.published_versions(store) == [1]

    # "after label --force succeeds, release still exits 7": exit 0, the video kept; the rebuilt
    # labels are the same labels (only the file's creation time differs), so v1 is named again
    rc, _, _ = _cli(capsys, "label", clip, "--out", out, "--store", s, "--no-progress", "--force")
    assert rc == EXIT_OK
    rc, text, _ = _cli(capsys, "release", "--store", s)
    assert rc == EXIT_OK and (_json_out(text)["version"], _json_out(text)["unchanged"]) == (1, True)
    latest = release.latest_release(store)
    assert latest[0] == 1 and [v["video_id"] for v in latest[1]["videos"]] == [vid]

    # a quarantine record written by the old code for a settings reason (or any record that
    # appears after publication) does not drop the published video either
    quarantine(store, vid, f"raw/label/{vid}/clip.mp4", "ingest",
               InputRejected("too_long", "the video is 2 s long, over the configured limit of 1 s"), "0" * 12)
    assert [r["video_id"] for r in release.ready_videos(store)] == [vid]
    rc, text, _ = _cli(capsys, "release", "--store", s)
    assert rc == EXIT_OK and _json_out(text)["unchanged"] is True

    # "There is no command to undo a quarantine": list it, release it, it is gone and audited
    rc, text, _ = _cli(capsys, "quarantine", "list", "--json", "--store", s)
    rows = json.loads(text)
    assert rc == EXIT_OK and [(r["id"], r["key"], r["reason"]) for r in rows] == [
        (vid, f"raw/label/{vid}/clip.mp4", "too_long")]
    assert set(rows[0]) >= {"id", "key", "reason", "detail", "time"}
    rc, text, _ = _cli(capsys, "quarantine", "release", vid, "--by", "alice", "--store", s)
    assert rc == EXIT_OK and json.loads(text)["released_by"] == "alice"
    assert list_quarantined(store) == [] and release_history(store, vid)[0]["record"]["reason"] == "too_long"
    rc, text, _ = _cli(capsys, "quarantine", "list", "--store", s)
    assert rc == EXIT_OK and "nothing is quarantined" in text
    rc, _, err = _cli(capsys, "quarantine", "release", vid, "--store", s)
    assert rc == EXIT_USAGE and "not quarantined" in err and "Traceback" not in err


def test_content_rejections_are_quarantined_and_a_released_one_is_picked_up_again(tmp_path, capsys):
    """What the content is stays permanent (exit 3, quarantined, left out of the next run);
    released, the next discovery takes the upload again, and ingest judges it again."""
    s = tmp_path / "store"
    store = LocalStore(s)
    good = pattern_video(tmp_path / "good.mp4", 256, 128, 3.0, 10)
    cut = truncate(good, tmp_path / "cut.mp4")
    notes = tmp_path / "notes.mp4"
    notes.write_text("definitely not a video")
    for f, key in ((cut, "raw/n/cut.mp4"), (notes, "raw/n/notes.mp4"), (good, "raw/n/good.mp4")):
        assert _cli(capsys, "upload", f, "--key", key, "--store", s, "--uploaded-at", "2026-01-05T08:00:00")[0] == EXIT_OK
    for key, reason in (("raw/n/cut.mp4", "truncated"), ("raw/n/notes.mp4", "not_a_video")):
        rc, _, err = _cli(capsys, "ingest", "--key", key, "--store", s)
        assert rc == EXIT_REJECTED and f"rejected ({reason})" in err
    rows = {r["key"]: r for r in list_quarantined(store)}
    assert {k: r["reason"] for k, r in rows.items()} == {"raw/n/cut.mp4": "truncated", "raw/n/notes.mp4": "not_a_video"}
    assert all(r["stage"] == "ingest" and r["detail"] and r["time"] for r in rows.values())
    # the next run's discovery leaves both out, and says so
    found, report = discovery.find_uploads(store, prefix="raw/n/")
    assert found == ["raw/n/good.mp4"] and sorted(report["quarantined_skipped"]) == ["raw/n/cut.mp4", "raw/n/notes.mp4"]
    # released (by raw key here; the id works too), the upload is found again by the next run
    cut_id = rows["raw/n/cut.mp4"]["id"]
    rec = release_quarantine(store, "raw/n/cut.mp4", by="ops:bob")
    assert rec["video_id"] == cut_id and rec["released_by"] == "ops:bob" and store.exists(rec["audit_key"])
    found, report = discovery.find_uploads(store, prefix="raw/n/")
    assert sorted(found) == ["raw/n/cut.mp4", "raw/n/good.mp4"] and report["quarantined_skipped"] == ["raw/n/notes.mp4"]
    # uploaded in January, released today: the next nightly run (today's data interval) takes it
    now = dt.datetime.now(dt.UTC)
    assert discovery.find_uploads(store, start=now - dt.timedelta(days=1), end=now + dt.timedelta(minutes=1))[0] \
        == ["raw/n/cut.mp4"]
    assert rec["uploaded"]["before"] == "2026-01-05T08:00:00+00:00"
    # its content is still cut off: ingest quarantines it again (content is permanent for that content)
    assert _cli(capsys, "ingest", "--key", "raw/n/cut.mp4", "--store", s)[0] == EXIT_REJECTED
    assert {r["id"] for r in list_quarantined(store)} == {cut_id, rows["raw/n/notes.mp4"]["id"]}
    assert len(release_history(store, cut_id)) == 1


def test_release_quarantine_refuses_what_it_cannot_do(tmp_path):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(NotQuarantined, match="nothing is quarantined") as e:
        release_quarantine(store, "raw/none.mp4", by="me")
    assert e.value.exit_code == EXIT_USAGE
    with pytest.raises(NotQuarantined, match="is not quarantined"):
        release_quarantine(store, "a" * 16, by="me")
    quarantine(store, "a" * 16, "raw/a.mp4", "ingest", InputRejected("not_a_video", "not a video"), "r" * 12)
    with pytest.raises(NotQuarantined, match="say who"):
        release_quarantine(store, "a" * 16, by=" ")
    # a damaged record is listed (it still keeps its upload out), and can be released
    store.put_bytes(layout.quarantine_key("b" * 16), b"{not json")
    rows = {r["id"]: r for r in list_quarantined(store)}
    assert rows["b" * 16]["reason"] == "unreadable" and rows["a" * 16]["reason"] == "not_a_video"
    assert release_quarantine(store, "b" * 16, by="me")["record"]["reason"] == "unreadable"
    assert [r["id"] for r in list_quarantined(store)] == ["a" * 16]


def test_a_quarantine_newer_than_the_validation_holds_back_an_unpublished_video(labeled_tiny, tmp_path):
    """Not published yet: a content quarantine after its last passing validation keeps it out of
    the release; released, it is in; labeled and passing again after the record, it is in too."""
    src, vid, run, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    quarantine(store, vid, "raw/tiny.mp4", "decode", InputRejected("truncated", "only 3 of 16 frames"), run)
    assert release.ready_videos(store) == []
    with pytest.raises(release.NothingToRelease, match="no video is ready"):
        release.release(store, release.PipelineConfig())
    release_quarantine(store, vid, by="me")
    assert [r["video_id"] for r in release.ready_videos(store)] == [vid]
    # a record older than the newest passing validation does not hold it back
    quarantine(store, vid, "raw/tiny.mp4", "decode", InputRejected("truncated", "only 3 of 16 frames"), run)
    rec = store.get_json(layout.quarantine_key(vid))
    rec["time"] = "2000-01-01T00:00:00+00:00"
    store.put_json(layout.quarantine_key(vid), rec)
    assert [r["video_id"] for r in release.ready_videos(store)] == [vid]


def test_an_ingest_record_the_probe_now_contradicts_is_released_by_the_next_ingest(tmp_path):
    """A store written before issue 12 holds 'too_long' records for good videos (a settings
    mistake); the next ingest of those bytes accepts them and lets them back in, audited. A record
    of a later stage (decode found the stream damaged) is not the probe's to judge: it stays."""
    from tasks.config import PipelineConfig
    from tasks.stages.runner import execute

    store = LocalStore(tmp_path / "store")
    store.put_file("raw/a.mp4", pattern_video(tmp_path / "a.mp4", 128, 64, 1.0, 5))
    store.put_file("raw/b.mp4", pattern_video(tmp_path / "b.mp4", 128, 64, 1.0, 6))
    a, _ = content_id(tmp_path / "a.mp4")
    b, _ = content_id(tmp_path / "b.mp4")
    quarantine(store, a, "raw/a.mp4", "ingest", InputRejected("too_long", "over the configured limit of 0 s"), "0" * 12)
    quarantine(store, b, "raw/b.mp4", "decode", InputRejected("damaged", "5 of 20 frames"), "0" * 12)
    for key in ("raw/a.mp4", "raw/b.mp4"):
        execute("ingest", store=store, config=PipelineConfig(), params={"key": key})
    assert [r["id"] for r in list_quarantined(store)] == [b]
    [audit] = release_history(store, a)
    assert audit["released_by"] == "ingest stage: the content passes the probe" and audit["record"]["reason"] == "too_long"


@pytest.mark.parametrize("args", [["quarantine"], ["quarantine", "list"], ["quarantine", "release"]])
def test_quarantine_help(args, capsys):
    with pytest.raises(SystemExit) as e:
        main([*args, "--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out.lower()
