"""Both DAGs run for real (``airflow dags test``, SQLite, local store) on a mixed batch of uploads."""

import json
import os
import subprocess

import pytest

from tasks import layout
from tasks.stages import release
from tasks.stages.runner import output_key
from tasks.storage import LocalStore
from tests.support.videos import stereo_top_bottom

pytestmark = [pytest.mark.slow, pytest.mark.airflow]


def airflow(cmd, args, store, timeout=900):
    env = dict(os.environ, LEADER360V_STORE=str(store.root))
    return subprocess.run([cmd, *args], capture_output=True, text=True, env=env, timeout=timeout)


def run_state(proc) -> str:
    line = next((ln for ln in proc.stdout.splitlines()[::-1] if "DagRun Finished" in ln), "")
    return "success" if "state=success" in line else ("failed" if "state=failed" in line else "?")


@pytest.fixture(scope="module")
def nightly(airflow_db, tiny_clip, tmp_path_factory):
    store = LocalStore(tmp_path_factory.mktemp("dagstore"))
    d = tmp_path_factory.mktemp("uploads")
    store.put_file("raw/batch/clip.mp4", tiny_clip / "clip.mp4")
    store.put_file("raw/batch/ça tourne — 360°.mp4", tiny_clip / "clip.mp4")      # duplicate, non-ASCII name
    (d / "notes.mp4").write_text("this is not a video")
    store.put_file("raw/batch/notes.mp4", d / "notes.mp4")
    store.put_file("raw/batch/stereo.mp4", stereo_top_bottom(d / "stereo.mp4"))
    proc = airflow(airflow_db, ["dags", "test", "leader360v_nightly", "-c", json.dumps({"prefix": "raw/batch/"})], store)
    return store, proc


def test_nightly_labels_good_videos_and_quarantines_bad_ones(nightly):
    store, proc = nightly
    assert run_state(proc) == "success", proc.stdout[-3000:] + proc.stderr[-3000:]
    ready = {r["video_id"]: r for r in release.ready_videos(store)}
    sources = {store.get_json(layout.source_key(v))["key"]: v for v in ready}
    twins = {"raw/batch/clip.mp4", "raw/batch/ça tourne — 360°.mp4"}   # same bytes, two names
    assert len(ready) == 2 and "raw/batch/stereo.mp4" in sources
    [first] = twins & set(sources)                     # whichever was ingested first is labeled, once
    assert store.get_json(layout.aliases_key(sources[first])) == sorted(twins - {first})
    q = [store.get_json(i.key) for i in store.list(layout.QUARANTINE)]
    assert [(r["key"], r["reason"]) for r in q] == [("raw/batch/notes.mp4", "not_a_video")]
    assert "no video became ready" not in proc.stdout


def test_release_publishes_then_a_failing_gate_publishes_nothing(nightly, airflow_db):
    store, _ = nightly
    proc = airflow(airflow_db, ["dags", "test", "leader360v_release"], store)
    assert run_state(proc) == "success", proc.stdout[-3000:]
    assert release.published_versions(store) == [1]
    m = store.get_json(layout.release_prefix(1) + "manifest.json")
    assert sum(1 for f in m["files"] if f.startswith("Annotations/")) == 16 + 10
    # corrupt one ready video's labels: the gate must fail and v2 must not appear
    r = release.ready_videos(store)[0]
    qa = store.get_json(layout.manifest_key(r["video_id"], r["run"], "qa"))
    key = output_key(store, qa, "annotations")
    doc = store.get_json(key)
    a = doc["annotations"][0]
    f = next(i for i, s in enumerate(a["segmentations"]) if s)
    a["areas"][f] += 1
    store.put_json(key, doc)
    proc = airflow(airflow_db, ["dags", "test", "leader360v_release"], store)
    assert run_state(proc) == "failed"
    assert "expect_column_pair_values_to_be_equal" in proc.stdout + proc.stderr
    assert "nothing was published" in proc.stdout + proc.stderr
    assert release.published_versions(store) == [1]
    assert store.get_json("releases/latest.json")["version"] == 1
