"""Deployment settings read in one place (environment first; Airflow Variables in production).

* ``LEADER360V_STORE``: the object store (directory / file:// URL locally).
* ``LEADER360V_CONFIG``: optional path to a pipeline configuration file (JSON/YAML) used as the
  base configuration; DAG-run params ``config_overrides`` apply on top.
* ``LEADER360V_EXECUTION``: ``local`` (stages run in the worker).
* ``LEADER360V_RETRIES`` / ``LEADER360V_RETRY_DELAY_SECONDS``: retry policy of stage tasks.
"""

from __future__ import annotations

import os
from datetime import timedelta

EXECUTION = os.environ.get("LEADER360V_EXECUTION", "local")

# Per-stage time limits: generous for CPU runs of long videos; a hung ffmpeg or model call
# must still end the attempt so a retry can start [airflow3_notes §1 "Pools, retries, timeouts"].
STAGE_TIMEOUTS = {
    "ingest": timedelta(minutes=30),
    "decode": timedelta(hours=1),
    "propose": timedelta(hours=1),
    "verify": timedelta(hours=1),
    "sdr": timedelta(minutes=30),
    "propagate": timedelta(hours=6),
    "refine": timedelta(hours=6),
    "qa": timedelta(hours=2),
    "validate": timedelta(minutes=30),
}

DEFAULT_ARGS = {
    "owner": "leader360v",
    # Transient failures (storage hiccups, a killed worker) are retried; permanent ones
    # (bad input, bad config, failed gate) fail at once (see stage_tasks.run_stage).
    "retries": int(os.environ.get("LEADER360V_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("LEADER360V_RETRY_DELAY_SECONDS", "60"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
}


def pipeline_config(overrides: dict | None = None):
    from tasks.config import PipelineConfig

    path = os.environ.get("LEADER360V_CONFIG")
    base = PipelineConfig.from_file(path) if path else PipelineConfig()
    return base.with_overrides(overrides or {})


def store():
    from tasks.storage import store_from_env

    return store_from_env()
