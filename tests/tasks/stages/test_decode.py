"""The decode stage (issue 12): the raw object must still be the video its id names; variable
frame rate in, every frame once out; a quarantine written by decode names the raw key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import EXIT_PERMANENT, InputRejected, SourceChanged
from tasks.stages.runner import execute, load_manifest
from tasks.storage import LocalStore
from tests.support.videos import pattern_video
from tests.tasks.video.test_frames import _levels, vfr_clip


def _ingest(store, key, path):
    store.put_file(key, path)
    return execute("ingest", store=store, config=PipelineConfig(), params={"key": key}).video_id


def _assert_nothing_decoded(store, vid, cfg):
    assert load_manifest(store, vid, cfg.hash, "decode") is None
    assert list(store.list(layout.video_prefix(vid) + "frames/")) == []


def test_a_changed_object_under_the_same_key_is_not_decoded_under_the_old_id(tmp_path):
    store = LocalStore(tmp_path / "store")
    cfg = PipelineConfig()
    first = pattern_video(tmp_path / "a.mp4", 128, 64, 1.0, 5)
    vid = _ingest(store, "raw/clip.mp4", first)
    # someone uploads another video under the same key (issue 12: `upload` overwrote it)
    store.put_file("raw/clip.mp4", pattern_video(tmp_path / "b.mp4", 128, 64, 2.0, 5))
    with pytest.raises(SourceChanged) as info:
        execute("decode", store=store, config=cfg, video_id=vid)
    err = info.value
    assert err.exit_code == EXIT_PERMANENT and not err.retryable
    assert "python -m tasks ingest --key raw/clip.mp4" in str(err) and vid in str(err)
    _assert_nothing_decoded(store, vid, cfg)
    # the same through the command line: exit 7, one line, no traceback
    p = subprocess.run([sys.executable, "-m", "tasks", "decode", "--video-id", vid, "--store", str(tmp_path / "store")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == EXIT_PERMANENT and "source changed:" in p.stderr and "Traceback" not in p.stderr
    _assert_nothing_decoded(store, vid, cfg)
    # the fix the message names: ingest gives the new content its own id, which decodes
    new = execute("ingest", store=store, config=cfg, params={"key": "raw/clip.mp4"}).video_id
    assert new != vid
    assert execute("decode", store=store, config=cfg, video_id=new).stats["frames"] == 10
    # and putting the original back makes the old id decodable again
    store.put_file("raw/clip.mp4", first)
    assert execute("decode", store=store, config=cfg, video_id=vid).stats["frames"] == 5


def test_a_changed_object_is_caught_on_s3_too(tmp_path):
    from tasks.storage.s3 import S3Store
    from tests.tasks.storage.conftest import FAST, start_moto, unique_bucket

    ep = start_moto()
    try:
        store = S3Store(unique_bucket("dec"), endpoint=ep.endpoint, access_key="testing", secret_key="testing",
                        secure=False, create_bucket=True, **FAST)
        cfg = PipelineConfig()
        vid = _ingest(store, "raw/clip.mp4", pattern_video(tmp_path / "a.mp4", 128, 64, 1.0, 5))
        store.put_file("raw/clip.mp4", pattern_video(tmp_path / "b.mp4", 128, 64, 1.0, 6))
        with pytest.raises(SourceChanged):
            execute("decode", store=store, config=cfg, video_id=vid)
        _assert_nothing_decoded(store, vid, cfg)
    finally:
        ep.server.stop()


def test_vfr_input_decodes_every_frame_once(tmp_path):
    """Issue 12: 20 frames in -> 40 labeled. Now 20, at the stream's average rate; with
    video.fps set, duration x fps +-1."""
    store = LocalStore(tmp_path / "store")
    vid = _ingest(store, "raw/vfr.mp4", vfr_clip(tmp_path))
    cfg = PipelineConfig()
    r = execute("decode", store=store, config=cfg, video_id=vid)
    assert r.stats["frames"] == 20
    source = store.get_json(layout.source_key(vid))
    assert r.stats["fps"] == pytest.approx(20 / source["probe"]["duration"], rel=0.02)
    prefix = r.outputs["frames"]
    with store.local_dir(store.key_from_uri(prefix), suffix=".jpg") as d:
        import cv2

        frames = [cv2.imread(str(f))[..., ::-1] for f in sorted(d.glob("*.jpg"))]
    assert _levels(frames) == list(range(20))
    cfg10 = cfg.with_overrides({"video.fps": 10})
    execute("ingest", store=store, config=cfg10, params={"key": "raw/vfr.mp4"})
    r10 = execute("decode", store=store, config=cfg10, video_id=vid)
    assert abs(r10.stats["frames"] - source["probe"]["duration"] * 10) <= 1


def test_a_quarantine_written_by_decode_names_the_raw_key(tmp_path, monkeypatch):
    from tasks.stages import decode as decode_stage

    store = LocalStore(tmp_path / "store")
    vid = _ingest(store, "raw/2026/clip.mp4", pattern_video(tmp_path / "a.mp4", 128, 64, 1.0, 5))
    monkeypatch.setattr(decode_stage, "iter_frames", lambda *a, **k: iter(()))  # a stream that decodes to nothing
    with pytest.raises(InputRejected) as info:
        execute("decode", store=store, config=PipelineConfig(), video_id=vid)
    assert info.value.reason == "no_frames"
    record = json.loads(store.get_bytes(layout.quarantine_key(vid)))
    assert record["key"] == "raw/2026/clip.mp4" and record["stage"] == "decode"  # was null (issue 12)


def test_an_fps_that_gives_no_frame_is_a_configuration_error_at_decode_too(tmp_path):
    """A run whose ingest was committed before issue 12 (no configuration check then) must not
    quarantine good content when its fps gives no frame: exit 2, nothing decoded or quarantined."""
    from tasks.errors import ConfigError

    store = LocalStore(tmp_path / "store")
    vid = _ingest(store, "raw/clip.mp4", pattern_video(tmp_path / "a.mp4", 128, 64, 1.0, 5))
    bad = PipelineConfig().with_overrides({"video.fps": 1e-9})
    # the old ingest's commit for that configuration, as a store written before the check holds it
    m = load_manifest(store, vid, PipelineConfig().hash, "ingest")
    store.put_json(layout.manifest_key(vid, bad.hash, "ingest"), {**m, "run": bad.hash, "config_hash": bad.hash})
    with pytest.raises(ConfigError, match="video.fps=1e-09") as info:
        execute("decode", store=store, config=bad, video_id=vid)
    assert info.value.exit_code == 2
    assert not store.exists(layout.quarantine_key(vid))
    _assert_nothing_decoded(store, vid, bad)


def test_a_damaged_stream_is_quarantined_by_decode_under_its_raw_key(tmp_path):
    """Issue 12, point 9, on a real file: the record decode writes names the raw key (it was
    null), so discovery leaves the upload out until someone releases it."""
    from tasks import discovery
    from tasks.quarantine import list_quarantined
    from tests.tasks.video.test_probe_decode import damaged_mjpeg

    store = LocalStore(tmp_path / "store")
    vid = _ingest(store, "raw/2026/bad.mp4", damaged_mjpeg(tmp_path / "bad.mp4"))
    p = subprocess.run([sys.executable, "-m", "tasks", "decode", "--video-id", vid, "--store", str(tmp_path / "store")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3 and "rejected (damaged)" in p.stderr and "Traceback" not in p.stderr
    [row] = list_quarantined(store)
    assert (row["id"], row["key"], row["reason"], row["stage"]) == (vid, "raw/2026/bad.mp4", "damaged", "decode")
    assert discovery.find_uploads(store, prefix="raw/2026/")[1]["quarantined_skipped"] == ["raw/2026/bad.mp4"]
    _assert_nothing_decoded(store, vid, PipelineConfig())
