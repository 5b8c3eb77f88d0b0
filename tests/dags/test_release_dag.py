"""The release DAG's publish task says what happened: a release that another one published
meanwhile (the race of issue 12, point 8) is logged as unchanged, not as a new publication."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.config import PipelineConfig
from tasks.stages import release
from tasks.storage import LocalStore

DAGS = Path(__file__).resolve().parents[2] / "dags"


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
    return fn(cand, {}), events.event.extra


def test_publish_logs_a_new_version_and_an_unchanged_one_differently(publish_fn, labeled_tiny, tmp_path,
                                                                       monkeypatch, capsys):
    src, _, _, _ = labeled_tiny
    shutil.copytree(src.root, tmp_path / "store")
    store = LocalStore(tmp_path / "store")
    cfg = PipelineConfig()
    # both candidates prepared and gated before either publishes: the second finds its content in v1
    a, b = release.prepare_candidate(store, cfg), release.prepare_candidate(store, cfg)
    release.validate_candidate(store, a["candidate"], cfg)
    release.validate_candidate(store, b["candidate"], cfg)

    out, extra = _run_publish(publish_fn, monkeypatch, store, a)
    log = capsys.readouterr().out
    assert out["version"] == 1 and not out["unchanged"] and extra["unchanged"] is False
    assert "published release v1 at" in log and "unchanged" not in log

    out, extra = _run_publish(publish_fn, monkeypatch, store, b)
    log = capsys.readouterr().out
    assert out["version"] == 1 and out["unchanged"] and extra == {**extra, "version": 1, "unchanged": True}
    assert "unchanged: v1 already holds these labels" in log and "published release" not in log
    assert release.published_versions(store) == [1]
