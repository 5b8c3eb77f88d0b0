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


def db_rows(sql: str, *args) -> list[tuple]:
    """Rows of the test Airflow home's metadata DB (SQLite), e.g. what the UI lists."""
    import sqlite3

    with sqlite3.connect(os.path.join(os.environ["AIRFLOW_HOME"], "airflow.db")) as con:
        return con.execute(sql, args).fetchall()


def last_run(dag_id: str) -> str:
    return db_rows("select run_id from dag_run where dag_id = ? order by id desc limit 1", dag_id)[0][0]


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
    assert "No video became ready" not in proc.stdout
    # the run's summary: a markdown table, no Python dicts, rejected and duplicate input accounted for
    log = proc.stdout + proc.stderr
    assert "Run summary: 2 ready, 1 quarantined, 1 duplicate." in log
    assert "| upload | video id | status | detail |" in log
    assert "| `raw/batch/notes.mp4` |" in log and "| quarantined | not_a_video at ingest: " in log
    assert f"| `{sorted(twins - {first})[0]}` | {sources[first]} | duplicate | same content as {first} |" in log
    assert "Every upload is accounted for: 2 ready, 1 quarantined, 1 duplicate." in log
    # the validate stage says "N of M expectations passed" and GX's own chatter stays out
    import re

    assert len(re.findall(r"video [0-9a-f]{16}: (\d+) of \1 expectations passed", log)) == 2
    assert "Calculating Metrics" not in log
    assert not [ln for ln in log.splitlines() if "[info" in ln and "great_expectations" in ln]
    run_id = last_run("leader360v_nightly")
    tis = dict(((t, m), (state, label)) for t, m, state, label in db_rows(
        "select task_id, map_index, state, rendered_map_index from task_instance where run_id = ?", run_id))
    assert tis[("outcome", -1)][0] == "success" and tis[("publish_ready", -1)][0] == "success"
    # every mapped stage task is named by its upload in the UI, whatever its outcome
    keys = {"raw/batch/clip.mp4", "raw/batch/ça tourne — 360°.mp4", "raw/batch/notes.mp4", "raw/batch/stereo.mp4"}
    assert {label for (t, m), (_, label) in tis.items() if t == "video.ingest"} == keys
    assert {label for (t, m), (state, label) in tis.items() if t == "video.validate" and state == "success"} == \
        {first, "raw/batch/stereo.mp4"}
    # the asset event names the ready videos and carries the table
    [(extra,)] = db_rows("select e.extra from asset_event e join asset a on a.id = e.asset_id "
                         "where a.name = 'leader360v_ready_videos' and e.source_run_id = ?", run_id)
    extra = json.loads(extra)
    assert sorted(extra["videos"]) == sorted(ready) and extra["counts"] == {"ready": 2, "quarantined": 1, "duplicate": 1}
    assert extra["summary"].startswith("| upload | video id | status | detail |")


def test_release_publishes_then_a_failing_gate_publishes_nothing(nightly, airflow_db):
    store, _ = nightly
    proc = airflow(airflow_db, ["dags", "test", "leader360v_release"], store)
    assert run_state(proc) == "success", proc.stdout[-3000:]
    assert release.published_versions(store) == [1]
    m = store.get_json(layout.release_prefix(1) + "manifest.json")
    assert sum(1 for f in m["files"] if f.startswith("Annotations/")) == 16 + 10
    assert "data_docs/index.html" in m["files"] and "gx_report.json" in m["files"]
    # the releases asset event says which version, where, and how much
    run_id = last_run("leader360v_release")
    [(extra,)] = db_rows("select e.extra from asset_event e join asset a on a.id = e.asset_id "
                         "where a.name = 'leader360v_releases' and e.source_run_id = ?", run_id)
    extra = json.loads(extra)
    assert extra["version"] == 1 and extra["uri"] == store.uri(layout.release_prefix(1))
    assert extra["videos"] == 2 and extra["objects"] > 0 and extra["data_docs"].endswith("data_docs/index.html")
    assert "quality gate passed: " in proc.stdout + proc.stderr
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
