"""Two writers on one (video, run, stage) (issue 12 point 5): real `python -m tasks` processes
started a second apart on the same store. Before the lease one failed and the committed manifest
disagreed with the files (the second cleared the first's prefix and rewrote it under its commit)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.stages import runner
from tasks.stages.runner import execute
from tasks.storage import LocalStore
from tasks.storage.lease import stage_lease_key


def assert_every_manifest_matches_its_files(store, vid, run):
    """Every committed manifest's checksums (StageWriter.files) are those of the stored objects,
    and nothing but those objects lives under the stage's prefix."""
    checked = 0
    for stage in runner.ORDER[1:]:
        m = runner.load_manifest(store, vid, run, stage)
        if m is None:
            continue
        for key, meta in m["files"].items():
            data = store.get_bytes(key)
            assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["size"], key
            checked += 1
        listed = {i.key for i in store.list(layout.stage_prefix(vid, run, stage))}
        assert listed - {layout.manifest_key(vid, run, stage)} == set(m["files"]), stage
    return checked


@pytest.fixture
def prepared(tiny_clip, tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_file("raw/c.mp4", tiny_clip / "clip.mp4")
    cfg = PipelineConfig()
    vid = execute("ingest", store=store, config=cfg, params={"key": "raw/c.mp4"}).video_id
    for stage in ("decode", "propose", "verify", "sdr"):
        execute(stage, store=store, config=cfg, video_id=vid)
    return store, vid, cfg


def _start(store, vid, stage, wait_s, *extra):
    env = {**os.environ, "LEADER360V_LEASE_WAIT_S": str(wait_s), "LEADER360V_LEASE_TTL_S": "30"}
    cmd = [sys.executable, "-m", "tasks", stage, "--video-id", vid, "--store", str(store.root), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _start_two(store, vid, cfg, stage, wait_s, *extra):
    """The first process, then the second a second after the first holds the lease."""
    first = _start(store, vid, stage, wait_s, *extra)
    key = stage_lease_key(vid, cfg.hash, stage)
    deadline = time.monotonic() + 60
    while not store.exists(key):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first process never took the lease"
        time.sleep(0.02)
    assert store.get_json(key)["holder"]["pid"] == first.pid
    time.sleep(1.0)
    second = _start(store, vid, stage, wait_s, *extra)
    return first, second


@pytest.mark.slow
def test_two_processes_on_one_stage_second_waits_then_skips(prepared):
    store, vid, cfg = prepared
    first, second = _start_two(store, vid, cfg, "propagate", 300)
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    import json

    assert json.loads(out1)["status"] == "done"
    assert json.loads(out2)["status"] == "skipped"   # it waited, found the commit, did not redo it
    assert assert_every_manifest_matches_its_files(store, vid, cfg.hash) > 0
    assert not store.exists(stage_lease_key(vid, cfg.hash, "propagate"))  # released


@pytest.mark.slow
def test_two_forced_processes_second_fails_cleanly_naming_the_holder(prepared):
    store, vid, cfg = prepared
    execute("propagate", store=store, config=cfg, video_id=vid)
    # The first holder is paused (SIGSTOP) while the second asks: on a quiet machine the tiny
    # clip's propagate finished before the second process had even imported (a timing race).
    first = _start(store, vid, "propagate", 0, "--force")
    key = stage_lease_key(vid, cfg.hash, "propagate")
    deadline = time.monotonic() + 60
    while not store.exists(key):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first process never took the lease"
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = _start(store, vid, "propagate", 0, "--force")
        out2, err2 = second.communicate(timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 1, err2                               # transient: Airflow retries it
    assert err2.startswith("busy:") and f"pid {first.pid}" in err2 and "Traceback" not in err2
    assert "stage propagate of video " + vid in err2
    assert assert_every_manifest_matches_its_files(store, vid, cfg.hash) > 0
    # and the downstream stage runs on what was committed
    assert execute("refine", store=store, config=cfg, video_id=vid).status == "done"
    assert assert_every_manifest_matches_its_files(store, vid, cfg.hash) > 0


@pytest.mark.slow
def test_two_label_runs_a_second_apart_on_one_store(tiny_clip, tmp_path):
    """The user's case: `label` twice on the same video and store; both finish, every manifest
    matches its files, and both exports are the same labels."""
    store_dir = tmp_path / "store"
    env = {**os.environ, "LEADER360V_LEASE_WAIT_S": "600", "LEADER360V_LEASE_TTL_S": "30"}

    def label(out):
        return subprocess.Popen([sys.executable, "-m", "tasks", "label", str(tiny_clip / "clip.mp4"), "--out", str(out),
                                 "--store", str(store_dir), "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    a = label(tmp_path / "a")
    time.sleep(1.0)
    b = label(tmp_path / "b")
    _, ea = a.communicate(timeout=600)
    _, eb = b.communicate(timeout=600)
    assert a.returncode == 0, ea
    assert b.returncode == 0, eb
    store = LocalStore(store_dir)
    [vprefix] = store.list_prefixes(layout.VIDEOS)
    vid = vprefix.split("/")[1]
    run = PipelineConfig().hash
    assert assert_every_manifest_matches_its_files(store, vid, run) > 0
    assert (tmp_path / "a" / "annotations.json").read_bytes() == (tmp_path / "b" / "annotations.json").read_bytes()
