import json

import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.errors import MissingUpstream
from tasks.stages import decode as decode_stage
from tasks.stages import runner
from tasks.stages.runner import execute
from tasks.storage import LocalStore
from tests.support.videos import pattern_video


@pytest.fixture
def ingested(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_file("raw/v.mp4", pattern_video(tmp_path / "v.mp4", 256, 128, 1.0, 5))
    r = execute("ingest", store=store, config=PipelineConfig(), params={"key": "raw/v.mp4"})
    return store, r.video_id


def test_stage_needs_its_upstream(ingested):
    store, vid = ingested
    with pytest.raises(MissingUpstream, match="needs stage 'decode' committed first"):
        execute("verify", store=store, config=PipelineConfig(), video_id=vid)


def test_idempotent_skip_force_and_staleness(ingested):
    store, vid = ingested
    cfg = PipelineConfig()
    d1 = execute("decode", store=store, config=cfg, video_id=vid)
    p1 = execute("propose", store=store, config=cfg, video_id=vid)
    assert (d1.status, p1.status) == ("done", "done")
    m1 = store.get_bytes(layout.manifest_key(vid, cfg.hash, "propose"))
    assert execute("propose", store=store, config=cfg, video_id=vid).status == "skipped"
    assert store.get_bytes(layout.manifest_key(vid, cfg.hash, "propose")) == m1
    # re-running an upstream stage makes the downstream one stale: it re-runs by itself
    assert execute("decode", store=store, config=cfg, video_id=vid, force=True).status == "done"
    assert execute("propose", store=store, config=cfg, video_id=vid).status == "done"
    # a new configuration writes beside the old run
    cfg2 = cfg.with_overrides({"propose.merge_threshold": 20.0})
    with pytest.raises(MissingUpstream, match="ingest --key"):
        execute("decode", store=store, config=cfg2, video_id=vid)
    execute("ingest", store=store, config=cfg2, params={"key": "raw/v.mp4"})
    execute("decode", store=store, config=cfg2, video_id=vid)
    assert store.exists(layout.run_config_key(vid, cfg2.hash)) and store.exists(layout.run_config_key(vid, cfg.hash))


def test_interrupted_stage_leaves_nothing_visible_and_retry_completes(ingested, monkeypatch):
    store, vid = ingested
    cfg = PipelineConfig()
    real = decode_stage.run

    def crash_after_writing(inputs, config, store_, writer):
        writer.put_bytes("partial.bin", b"half")
        raise OSError("worker killed")

    monkeypatch.setattr(decode_stage, "run", crash_after_writing)
    with pytest.raises(OSError):
        execute("decode", store=store, config=cfg, video_id=vid)
    assert runner.load_manifest(store, vid, cfg.hash, "decode") is None  # not committed
    monkeypatch.setattr(decode_stage, "run", real)
    r = execute("decode", store=store, config=cfg, video_id=vid)
    assert r.status == "done"
    assert not store.exists(layout.stage_prefix(vid, cfg.hash, "decode") + "partial.bin")


def test_manifest_lists_every_output_with_its_checksum(ingested):
    import hashlib

    store, vid = ingested
    cfg = PipelineConfig()
    execute("decode", store=store, config=cfg, video_id=vid)
    execute("propose", store=store, config=cfg, video_id=vid)
    m = runner.load_manifest(store, vid, cfg.hash, "propose")
    assert m["files"] and m["config_hash"] == cfg.hash and "decode" in m["upstream"]
    for key, meta in m["files"].items():
        assert hashlib.sha256(store.get_bytes(key)).hexdigest() == meta["sha256"]
    json.dumps(m)


def test_a_stage_process_killed_mid_stage_like_an_evicted_pod(tiny_clip, tmp_path):
    """SIGKILL (an evicted pod, an OOM kill) runs no handler: the outputs written so far stay in
    the store, but nothing downstream can see them (no manifest), and the retry cleans them up
    and commits the same outputs as a run that was never interrupted."""
    import signal
    import subprocess
    import sys
    import time

    def prepared(name):
        store = LocalStore(tmp_path / name)
        store.put_file("raw/c.mp4", tiny_clip / "clip.mp4")
        vid = execute("ingest", store=store, config=PipelineConfig(), params={"key": "raw/c.mp4"}).video_id
        for stage in ("decode", "propose", "verify", "sdr"):
            execute(stage, store=store, config=PipelineConfig(), video_id=vid)
        return store, vid

    cfg = PipelineConfig()
    clean, vid = prepared("clean")
    execute("propagate", store=clean, config=cfg, video_id=vid)
    store, vid2 = prepared("killed")
    assert vid2 == vid
    prefix = layout.stage_prefix(vid, cfg.hash, "propagate")
    cmd = [sys.executable, "-m", "tasks", "propagate", "--video-id", vid, "--store", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(store.list(prefix + "idmaps/"))) < 3:
        assert proc.poll() is None, f"the stage ended before it could be killed: {proc.stderr.read()!r}"
        assert time.monotonic() < deadline, "the stage wrote no id maps in 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    written = len(list(store.list(prefix + "idmaps/")))
    assert written >= 3                                          # partial outputs are there ...
    assert runner.load_manifest(store, vid, cfg.hash, "propagate") is None   # ... and invisible
    with pytest.raises(MissingUpstream):
        execute("refine", store=store, config=cfg, video_id=vid)
    retry = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr
    got = runner.load_manifest(store, vid, cfg.hash, "propagate")
    want = runner.load_manifest(clean, vid, cfg.hash, "propagate")
    assert {k: v["sha256"] for k, v in got["files"].items()} == {k: v["sha256"] for k, v in want["files"].items()}
    listed = {i.key for i in store.list(prefix)} - {layout.manifest_key(vid, cfg.hash, "propagate")}
    assert listed == set(got["files"])                           # no leftover of the killed attempt
