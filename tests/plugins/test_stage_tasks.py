import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from leader360v_airflow import stage_tasks
from tests.support.videos import pattern_video


@pytest.fixture
def context(monkeypatch, tmp_path):
    ctx = {"params": {"force": False, "config_overrides": {}}}
    monkeypatch.setattr(stage_tasks, "get_current_context", lambda: ctx)
    monkeypatch.setenv("LEADER360V_STORE", str(tmp_path / "store"))
    from tasks.storage import LocalStore

    return ctx, LocalStore(tmp_path / "store")


def test_mapped_results_normalises_airflow_quirk():
    assert stage_tasks.mapped_results(None) == []
    assert stage_tasks.mapped_results({"a": 1}) == [{"a": 1}]     # apache/airflow#69036
    assert stage_tasks.mapped_results([{"a": 1}, None, {"b": 2}]) == [{"a": 1}, {"b": 2}]


def test_errors_map_to_airflow_outcomes(context, tmp_path):
    ctx, store = context
    (tmp_path / "x.mp4").write_text("not a video")
    store.put_file("raw/x.mp4", tmp_path / "x.mp4")
    with pytest.raises(AirflowFailException, match=r"rejected \(not_a_video\)"):   # quarantined, no retry
        stage_tasks.run_stage("ingest", key="raw/x.mp4")
    assert ctx["video_label"] == "raw/x.mp4"
    v = pattern_video(tmp_path / "v.mp4")
    store.put_file("raw/a.mp4", v)
    store.put_file("raw/b.mp4", v)
    first = stage_tasks.run_stage("ingest", key="raw/a.mp4")
    assert first["key"] == "raw/a.mp4" and first["stage"] == "ingest"
    with pytest.raises(AirflowSkipException, match="same content"):    # duplicate: skipped
        stage_tasks.run_stage("ingest", key="raw/b.mp4")
    # the configuration must not change between the stages of one video
    ctx["params"]["config_overrides"] = {"refine.tau": 0.01}
    with pytest.raises(AirflowFailException, match="configuration changed"):
        stage_tasks.run_stage("decode", previous=first)
    ctx["params"]["config_overrides"] = {}
    out = stage_tasks.run_stage("decode", previous=first)
    assert out["stage"] == "decode" and out["status"] == "done" and out["key"] == "raw/a.mp4"


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError):
        stage_tasks.stage_task("teleport")


def test_a_bad_configuration_fails_once_instead_of_being_retried(context, tmp_path):
    """issue 11: the configuration was built outside the stage's try, so a typo was retried per video."""
    ctx, store = context
    store.put_file("raw/a.mp4", pattern_video(tmp_path / "v.mp4"))
    ctx["params"]["config_overrides"] = {"refine.tua": 0.004}
    with pytest.raises(AirflowFailException, match=r"refine\.tua: unknown setting; did you mean refine\.tau\?"):
        stage_tasks.run_stage("ingest", key="raw/a.mp4")
    assert ctx["video_label"] == "raw/a.mp4"


def test_outcomes_come_from_the_error_classes():
    from tasks import errors

    assert isinstance(stage_tasks.airflow_outcome(errors.DuplicateVideo("v", "raw/b", "raw/a")), AirflowSkipException)
    for exc in (errors.ConfigError("x"), errors.QualityGateFailed("x"), errors.MissingUpstream("x"),
                errors.InputRejected("truncated", "x"), errors.PermanentError("x")):
        assert isinstance(stage_tasks.airflow_outcome(exc), AirflowFailException), exc
    for exc in (errors.StoreError("x"), errors.TransientError("x"), OSError("x"), RuntimeError("x")):
        assert stage_tasks.airflow_outcome(exc) is None        # propagates: retried
