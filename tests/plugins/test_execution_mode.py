"""The one switch between local and kubernetes execution, and its precedence."""

from __future__ import annotations

import pytest

from leader360v_airflow import settings, stage_tasks


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.delenv(settings.EXECUTION_ENV, raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_LEADER360V_EXECUTION", raising=False)
    settings.reset_execution_mode()
    yield
    settings.reset_execution_mode()


def test_default_is_local():
    assert settings.execution_mode() == "local"


def test_environment_sets_the_deployment_default(monkeypatch):
    monkeypatch.setenv(settings.EXECUTION_ENV, " Kubernetes ")
    assert settings.execution_mode() == "kubernetes"


def test_airflow_variable_wins_over_the_environment(monkeypatch):
    # AIRFLOW_VAR_* is the environment secrets backend, read first by Variable.get; the metastore
    # (UI/CLI Variables) answers the same call inside the dag-processor and workers.
    monkeypatch.setenv(settings.EXECUTION_ENV, "kubernetes")
    monkeypatch.setenv("AIRFLOW_VAR_LEADER360V_EXECUTION", "local")
    assert settings.execution_mode() == "local"


def test_invalid_values_name_their_source(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_LEADER360V_EXECUTION", "celery")
    with pytest.raises(ValueError, match="Airflow Variable leader360v_execution='celery'"):
        settings.execution_mode()
    monkeypatch.delenv("AIRFLOW_VAR_LEADER360V_EXECUTION")
    monkeypatch.setenv(settings.EXECUTION_ENV, "gpu")
    with pytest.raises(ValueError, match="LEADER360V_EXECUTION='gpu'"):
        settings.execution_mode()


def test_read_once_per_process(monkeypatch):
    monkeypatch.setenv(settings.EXECUTION_ENV, "kubernetes")
    assert settings.execution_mode() == "kubernetes"
    monkeypatch.setenv(settings.EXECUTION_ENV, "local")
    assert settings.execution_mode() == "kubernetes"      # one parse sees one mode
    settings.reset_execution_mode()
    assert settings.execution_mode() == "local"


def test_worker_executor_config_only_in_kubernetes_mode(monkeypatch):
    assert stage_tasks.worker_executor_config("release") == {}
    monkeypatch.setenv(settings.EXECUTION_ENV, "kubernetes")
    settings.reset_execution_mode()
    pod = stage_tasks.worker_executor_config("release")["pod_override"]
    assert pod.spec.containers[0].resources.requests["memory"] == "8Gi"
