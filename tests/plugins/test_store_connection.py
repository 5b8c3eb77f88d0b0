"""The Airflow side builds the MinIO store from a connection (credentials never in code or XCom)."""

import json

import pytest

from leader360v_airflow import settings
from tasks.errors import ConfigError
from tasks.storage import LocalStore
from tasks.storage.s3 import S3Store


def test_store_from_an_airflow_connection(monkeypatch):
    conn = {"conn_type": "aws", "host": "minio.internal", "port": 9000, "login": "pipeline",
            "password": "s3cr3t-value-xyz", "extra": {"bucket": "leader360v", "prefix": "team-a", "secure": False,
                                                     "region_name": "eu-west-1"}}
    monkeypatch.setenv("AIRFLOW_CONN_L360_MINIO", json.dumps(conn))
    monkeypatch.setenv("LEADER360V_STORE_CONN_ID", "l360_minio")
    store = settings.store()
    assert isinstance(store, S3Store)
    assert store.uri("raw/a.mp4") == "s3://leader360v/team-a/raw/a.mp4"
    assert "s3cr3t-value-xyz" not in repr(store) and "s3cr3t-value-xyz" not in str(vars(store))


def test_connection_without_bucket_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_L360_BAD", json.dumps({"conn_type": "aws", "host": "minio.internal"}))
    monkeypatch.setenv("LEADER360V_STORE_CONN_ID", "l360_bad")
    monkeypatch.delenv("LEADER360V_S3_BUCKET", raising=False)
    with pytest.raises(ConfigError, match="extra.bucket"):
        settings.store()


def test_without_a_connection_the_environment_decides(monkeypatch, tmp_path):
    monkeypatch.delenv("LEADER360V_STORE_CONN_ID", raising=False)
    monkeypatch.setenv("LEADER360V_STORE", str(tmp_path / "s"))
    assert isinstance(settings.store(), LocalStore)
