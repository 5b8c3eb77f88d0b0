"""Issue 12, point 8: ``release`` is idempotent, also when two of them race.

Run twice with nothing changed, it names the latest version and publishes nothing; a changed
candidate gets the next version exactly once when two ``release`` processes (or threads) start
together: one publishes, the other reports the version the first published, both exit 0.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import pytest

from tasks import layout
from tasks.config import PipelineConfig
from tasks.stages import release
from tasks.stages.runner import run_chain
from tasks.storage import LocalStore


@pytest.fixture
def store(labeled_tiny, tmp_path):
    src, vid, run, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "store")
    return LocalStore(tmp_path / "store"), vid, run


def _assert_one_complete_version(s, version, n_versions):
    assert release.published_versions(s) == list(range(1, n_versions + 1))
    assert s.get_json("releases/latest.json")["version"] == version
    assert not [i.key for i in s.list(layout.RELEASES) if i.key.endswith(".claim")]
    assert not list(s.list(release.CANDIDATES))          # the loser's candidate is cleaned up too
    assert not list(s.list(release.PUBLISH_LEASE))       # and the lease released


@pytest.mark.slow
def test_two_release_processes_racing_publish_one_version_and_both_name_it(store):
    s, vid, run = store
    cmd = [sys.executable, "-m", "tasks", "release", "--store", str(s.root)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    docs = [json.loads(o[0]) for o in outs]
    assert [d["version"] for d in docs] == [1, 1]
    assert sorted(d["unchanged"] for d in docs) == [False, True]   # one published, the other reports it
    assert all(d["prefix"] == "releases/v1/" and d["videos"] == 1 for d in docs)
    _assert_one_complete_version(s, 1, 1)
    # run again with nothing changed: v1 is named, nothing published, exit 0, no traceback
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and json.loads(p.stdout)["version"] == 1 and json.loads(p.stdout)["unchanged"]
    assert "release v1 already holds exactly these 1 video" in p.stderr and "Traceback" not in p.stderr
    _assert_one_complete_version(s, 1, 1)


def test_a_changed_candidate_gets_the_next_version_once_when_two_threads_race(store):
    s, vid, run = store
    first = release.release(s, PipelineConfig())
    assert first["version"] == 1 and not first["unchanged"]
    newer = PipelineConfig().with_overrides({"qa.preview_width": 512})  # new labels of the same video
    run_chain(store=s, config=newer, key="raw/tiny.mp4", progress=False)
    results, errors = [], []
    barrier = threading.Barrier(2)

    def go():
        try:
            barrier.wait()
            results.append(release.release(s, PipelineConfig()))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == [] and len(results) == 2
    assert [r["version"] for r in results] == [2, 2] and sorted(r["unchanged"] for r in results) == [False, True]
    assert results[0]["runs"] == results[1]["runs"] == [newer.hash]
    _assert_one_complete_version(s, 2, 2)
    m = s.get_json(layout.release_prefix(2) + "manifest.json")
    assert [v["run"] for v in m["videos"]] == [newer.hash] and m["objects"] == results[0]["objects"]


def test_a_candidate_published_by_someone_else_meanwhile_is_not_published_again(store):
    """The race at its narrowest: both prepared and passed the gate before either published."""
    s, vid, run = store
    cfg = PipelineConfig()
    a, b = release.prepare_candidate(s, cfg), release.prepare_candidate(s, cfg)
    release.validate_candidate(s, a["candidate"], cfg)
    release.validate_candidate(s, b["candidate"], cfg)
    won = release.publish_candidate(s, a["candidate"])
    lost = release.publish_candidate(s, b["candidate"])
    assert (won["version"], won["unchanged"], lost["version"], lost["unchanged"]) == (1, False, 1, True)
    assert lost["files"] == won["files"] and lost["objects"] == won["objects"]
    _assert_one_complete_version(s, 1, 1)
