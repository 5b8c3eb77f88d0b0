"""The release DAG's publish task says what happened, and only a new release is an event: a
release that another one published meanwhile (the race of issue 12, point 8) is logged as
unchanged and emits no ``leader360v_releases`` asset event, so its consumers do not re-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.config import PipelineConfig
from tasks.stages import release
from tests.support.stores import copy_store

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"


@pytest.fixture(scope="module")
def publish_fn():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "leader360v_release.py"))
    assert bag.import_errors == {}
    return bag.dags["leader360v_release"].get_task("publish").python_callable


class _Events:
    """Airflow's outlet_events accessor: one event per asset, ``extra`` set by the task."""

    def __init__(self):
        self.event = SimpleNamespace(extra=None)

    def __getitem__(self, asset):
        assert asset.name == "leader360v_releases"
        return self.event


def _run_publish(fn, monkeypatch, store, cand):
    events = _Events()
    monkeypatch.setitem(fn.__globals__, "get_current_context", lambda: {"outlet_events": events})
    monkeypatch.setattr(fn.__globals__["settings"], "store", lambda: store)
    try:
        return fn(cand, {}), events.event.extra
    except Exception as exc:  # noqa: BLE001 - the test looks at what the task raised
        return exc, events.event.extra


def test_publish_logs_a_new_version_and_skips_an_unchanged_one(publish_fn, labeled_tiny, tmp_path,
                                                                monkeypatch, capsys):
    from airflow.sdk.exceptions import AirflowSkipException

    store = copy_store(labeled_tiny[0], tmp_path / "store")
    cfg = PipelineConfig()
    # both candidates prepared and gated before either publishes: the second finds its content in v1
    a, b = release.prepare_candidate(store, cfg), release.prepare_candidate(store, cfg)
    release.validate_candidate(store, a["candidate"], cfg)
    release.validate_candidate(store, b["candidate"], cfg)

    out, extra = _run_publish(publish_fn, monkeypatch, store, a)
    log = capsys.readouterr().out
    assert out["version"] == 1 and not out["unchanged"] and extra["version"] == 1 and "unchanged" not in extra
    assert "published release v1 at" in log and "unchanged" not in log

    out, extra = _run_publish(publish_fn, monkeypatch, store, b)
    assert isinstance(out, AirflowSkipException) and extra is None        # skipped: no event's extra set
    assert str(out).startswith("unchanged: v1 already holds these labels") and "no asset event" in str(out)
    assert "published release" not in capsys.readouterr().out
    assert release.published_versions(store) == [1]


DRIVER = r'''
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.models import TaskInstance
from airflow.models.asset import AssetEvent, AssetModel
from airflow.utils.session import create_session
from sqlalchemy import select

import tasks.stages.release as rel
from tasks.config import PipelineConfig
from leader360v_airflow import settings

real = rel.publish_candidate


def racing(store, candidate):
    """Another release publishes the same labels while this one waits for the publish lease."""
    rel.publish_candidate = real          # the rival publishes through the real function
    rel.release(store, PipelineConfig())
    return real(store, candidate)


if sys.argv[2] == "race":
    rel.publish_candidate = racing
dag = DagBag(dag_folder=sys.argv[1]).dags["leader360v_release"]
dr = dag.test(run_conf={"config_hash": None, "config_overrides": {}})
with create_session() as s:
    tis = s.scalars(select(TaskInstance).where(TaskInstance.run_id == dr.run_id)).all()
    events = s.scalars(select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                       .where(AssetModel.name == "leader360v_releases", AssetEvent.source_run_id == dr.run_id)).all()
print("RESULT " + json.dumps({"state": str(dr.state), "tis": {t.task_id: str(t.state) for t in tis},
                              "events": [dict(e or {}) for e in events]}))
'''


def _release_run(store_root: Path, mode: str) -> dict:
    env = dict(os.environ, LEADER360V_STORE=str(store_root),
               PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO)]))
    for name in ("LEADER360V_EXECUTION", "AIRFLOW_VAR_LEADER360V_EXECUTION"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(DAGS), mode], capture_output=True, text=True,
                          env=env, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, (proc.stdout + proc.stderr)[-5000:]
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.airflow
def test_a_release_published_meanwhile_emits_no_asset_event(airflow_db, labeled_tiny, tmp_path):
    """Real ``dag.test()`` runs (SQLite metadata DB): a new release is one asset event with its
    version; a release whose content another one published while it waited ends with publish
    skipped and no asset event -- nothing re-triggers downstream for a release it already had."""
    fresh = copy_store(labeled_tiny[0], tmp_path / "fresh")
    res = _release_run(fresh.root, "plain")
    assert res["state"] == "success" and res["tis"]["publish"] == "success", res
    assert [e["version"] for e in res["events"]] == [1] and release.published_versions(fresh) == [1]

    raced = copy_store(labeled_tiny[0], tmp_path / "raced")
    res = _release_run(raced.root, "race")
    assert res["tis"]["candidate"] == "success" and res["tis"]["publish"] == "skipped", res
    assert res["events"] == [] and res["state"] == "success", res
    assert release.published_versions(raced) == [1]                    # the racing release's v1 only
