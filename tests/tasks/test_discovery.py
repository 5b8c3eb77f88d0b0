"""Discovery: upload times, request checks that list every problem with its fix, run summaries."""

import datetime as dt
import json
import os

import pytest

from tasks import discovery, layout
from tasks.cli import main
from tasks.errors import RequestInvalid
from tasks.storage import LocalStore

UTC = dt.UTC


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def _upload(tmp_path, store, key, when=None, capsys=None):
    f = tmp_path / "f.bin"
    f.write_bytes(key.encode())
    args = ["upload", str(f), "--key", key, "--store", str(store.root)]
    if when:
        args += ["--uploaded-at", when]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out) if capsys else None


def test_upload_records_its_time_and_a_backfill_finds_exactly_its_range(tmp_path, store, capsys):
    # three files imported today for three past days, one put there by another tool
    for day in (20, 21, 22):
        out = _upload(tmp_path, store, f"raw/2026-11-{day}/clip.mp4", f"2026-11-{day}T08:00:00", capsys)
        assert out["uploaded"] == f"2026-11-{day}T08:00:00+00:00"
    assert store.get_json("uploads/2026-11-21/clip.mp4.json")["uploaded"] == "2026-11-21T08:00:00+00:00"
    other = tmp_path / "other.mp4"
    other.write_bytes(b"x")
    store.put_file("raw/other/tool.mp4", other)           # no record: the store's own time counts
    day = dt.timedelta(days=1)
    start = dt.datetime(2026, 11, 21, 2, tzinfo=UTC)
    assert discovery.find_uploads(store, start=start, end=start + day)[0] == ["raw/2026-11-21/clip.mp4"]
    assert discovery.find_uploads(store, start=start - day, end=start + 2 * day)[0] == [
        "raw/2026-11-20/clip.mp4", "raw/2026-11-21/clip.mp4", "raw/2026-11-22/clip.mp4"]
    now = dt.datetime.now(UTC)
    assert discovery.find_uploads(store, start=now - day, end=now + dt.timedelta(minutes=1))[0] == ["raw/other/tool.mp4"]


def test_the_store_time_counts_never_the_source_files_mtime(tmp_path, store):
    src = tmp_path / "old.mp4"
    src.write_bytes(b"old")
    os.utime(src, (0, 0))                                 # a file last modified in 1970
    store.put_file("raw/a/old.mp4", src)
    t = discovery.upload_time(store, store.stat("raw/a/old.mp4"))
    assert abs((t - dt.datetime.now(UTC)).total_seconds()) < 60


def test_ingest_records_the_upload_time(tmp_path, store, capsys):
    from tasks.config import PipelineConfig
    from tasks.stages.runner import execute
    from tests.support.videos import pattern_video

    assert main(["upload", str(pattern_video(tmp_path / "v.mp4")), "--key", "raw/v.mp4", "--store", str(store.root),
                 "--uploaded-at", "2026-11-20T10:00:00Z"]) == 0
    res = execute("ingest", store=store, config=PipelineConfig(), params={"key": "raw/v.mp4"})
    assert store.get_json(layout.source_key(res.video_id))["uploaded"] == "2026-11-20T10:00:00+00:00"


def test_uploaded_at_is_checked(tmp_path, store, capsys):
    f = tmp_path / "f.bin"
    f.write_bytes(b"x")
    with pytest.raises(SystemExit) as e:
        main(["upload", str(f), "--key", "raw/a.mp4", "--uploaded-at", "yesterday", "--store", str(store.root)])
    assert e.value.code == 2 and "not an ISO 8601 time" in capsys.readouterr().err
    assert main(["upload", str(f), "--key", "other/a.mp4", "--uploaded-at", "2026-11-20", "--store", str(store.root)]) == 2


def test_a_request_lists_every_problem_with_its_fix(tmp_path, store, capsys):
    _upload(tmp_path, store, "raw/2026-11-24/clip.mp4")
    _upload(tmp_path, store, "raw/2026-11-25/clip.mp4")
    with pytest.raises(RequestInvalid) as e:
        discovery.find_uploads(store, keys=["raw/2026-11-24/clpi.mp4", "raw/nowhere/x.mp4"])
    assert e.value.problems == [
        f"key 'raw/2026-11-24/clpi.mp4' does not exist in {store.uri()}: did you mean 'raw/2026-11-24/clip.mp4'?",
        f"key 'raw/nowhere/x.mp4' does not exist in {store.uri()}: nothing is stored under raw/nowhere/; "
        "upload it with `python -m tasks upload FILE --key raw/nowhere/x.mp4`",
    ]
    with pytest.raises(RequestInvalid, match=r"prefix 'raw/2026-11-2/' matches no upload .*did you mean .*'raw/2026-11-24/'"):
        discovery.find_uploads(store, prefix="raw/2026-11-2/")
    with pytest.raises(RequestInvalid, match="outside it"):
        discovery.find_uploads(store, prefix="videos/")
    with pytest.raises(RequestInvalid, match="give keys or prefix, not both"):
        discovery.find_uploads(store, keys=["raw/2026-11-24/clip.mp4"], prefix="raw/")
    # a quiet night is not an error
    start = dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert discovery.find_uploads(store, start=start, end=start + dt.timedelta(days=1))[0] == []


def test_override_problems_name_their_fix():
    assert discovery.check_overrides({}) == [] and discovery.check_overrides({"refine.tau": 0.004}) == []
    assert discovery.check_overrides({"refine.tua": 0.004, "video.fps": "fast"}) == [
        "config_overrides: video.fps: Input should be a valid number, unable to parse string as a number",
        "config_overrides: refine.tua: unknown setting; did you mean refine.tau?",
    ]
    assert discovery.check_overrides(["refine.tau"])[0].startswith("config_overrides must be an object")
    (problem,) = discovery.check_overrides({"video.width": 511})
    assert problem.startswith("config_overrides: video: Value error, video.width must be") and "try 508" in problem


def test_summary_says_what_became_of_every_upload(tmp_path, store):
    from tasks.errors import InputRejected
    from tasks.stages.runner import quarantine

    stages = ("ingest", "decode", "propose")
    keys = ["raw/ok.mp4", "raw/bad.mp4", "raw/dup.mp4", "raw/crash.mp4", "raw/lost.mp4"]
    quarantine(store, "b" * 16, "raw/bad.mp4", "ingest", InputRejected("not_a_video", "not a video file"), "r" * 12)
    store.put_json(layout.source_key("a" * 16), {"key": "raw/ok.mp4"})
    store.put_json(layout.aliases_key("a" * 16), ["raw/dup.mp4"])
    states = {0: dict.fromkeys(stages, "success"), 1: {"ingest": "failed", "decode": "upstream_failed"},
              2: {"ingest": "skipped", "decode": "skipped"}, 3: {"ingest": "success", "decode": "failed",
                                                                  "propose": "upstream_failed"}}
    s = discovery.summarize(store, keys, [{"key": "raw/ok.mp4", "video_id": "a" * 16, "run": "c" * 12}],
                            states, stages, {3: "d" * 16})
    assert [(r["key"], r["status"]) for r in s["videos"]] == [
        ("raw/ok.mp4", "ready"), ("raw/bad.mp4", "quarantined"), ("raw/dup.mp4", "duplicate"),
        ("raw/crash.mp4", "failed"), ("raw/lost.mp4", "failed")]
    assert s["videos"][3]["stage"] == "decode" and s["videos"][4]["stage"] is None
    assert s["counts"] == {"ready": 1, "quarantined": 1, "duplicate": 1, "failed": 2}
    assert discovery.counts_sentence(s["counts"]) == "1 ready, 1 quarantined, 1 duplicate, 2 failed"
    table = discovery.summary_table(s).splitlines()
    assert table[0] == "| upload | video id | status | detail |"
    assert table[2] == f"| `raw/ok.mp4` | {'a' * 16} | ready | run {'c' * 12} |"
    assert table[3] == f"| `raw/bad.mp4` | {'b' * 16} | quarantined | not_a_video at ingest: not a video file |"
    assert table[4] == f"| `raw/dup.mp4` | {'a' * 16} | duplicate | same content as raw/ok.mp4 |"
    assert table[5] == f"| `raw/crash.mp4` | {'d' * 16} | failed | decode failed; see that task's log |"
    assert "{" not in "\n".join(table)                      # no Python dicts in what an operator reads
    # a video rejected by a later stage (its record has the id, not the key) is quarantined, not failed
    quarantine(store, "d" * 16, None, "decode", InputRejected("truncated", "the video ends early"), "c" * 12)
    s = discovery.summarize(store, keys, [], states, stages, {3: "d" * 16})
    assert s["videos"][3]["status"] == "quarantined" and s["videos"][3]["detail"].startswith("truncated at decode")
    assert discovery.describe_report(["raw/ok.mp4"], {"quarantined_skipped": ["raw/bad.mp4"], "over_limit": 0}) == (
        "1 upload to label; 1 left out because quarantined earlier (raw/bad.mp4; `python -m tasks quarantine "
        "release ID` lets one back in, include_quarantined retries them all).")
