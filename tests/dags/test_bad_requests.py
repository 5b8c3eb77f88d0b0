"""Operator mistakes fail once, fast, before any video is touched, naming the fix (issue 11).

Each case is a real ``dag.test()`` run of ``leader360v_nightly`` (SQLite metadata DB, local
store). The cases of one execution mode share one interpreter, as the dag-processor and a worker
would: the DAG is parsed once, then triggered once per case. What is checked per case: the run
failed, ``discover`` failed on its first and only try, no stage task of any video started, and
discover's failure lists every problem with its fix. Mistakes the trigger form's JSON schema can
express are refused before a run even exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

REPO = Path(__file__).resolve().parents[2]

DRIVER = r'''
import json, os, sys, time
from airflow.dag_processing.dagbag import DagBag
from airflow.models import TaskInstance
from airflow.utils.session import create_session
from sqlalchemy import select

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["leader360v_nightly"]
out = {}
for name, case in json.loads(sys.argv[2]).items():
    os.environ.update(case.get("env", {}))
    print(f"=== CASE {name} ===", flush=True)
    t0 = time.perf_counter()
    try:
        # every param explicit: dag.test() merges a run's conf into the DAG's params in place
        dr = dag.test(run_conf={"keys": [], "prefix": None, "config_overrides": {}, **case["conf"]})
    except Exception as exc:
        out[name] = {"refused": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - t0}
    else:
        with create_session() as s:
            tis = s.scalars(select(TaskInstance).where(TaskInstance.run_id == dr.run_id)).all()
            out[name] = {"state": str(dr.state), "seconds": time.perf_counter() - t0,
                         "tis": {f"{t.task_id}[{t.map_index}]": [str(t.state), t.try_number] for t in tis},
                         "first_failure_s": min(((t.end_date - dr.start_date).total_seconds()
                                                 for t in tis if str(t.state) == "failed"), default=None)}
    for k in case.get("env", {}):
        os.environ.pop(k, None)
    print(f"=== END {name} ===", flush=True)
print("RESULT " + json.dumps(out))
'''


def run_cases(cases: dict, store: Path, extra_env: dict | None = None) -> tuple[dict, dict]:
    env = dict(os.environ, LEADER360V_STORE=str(store), PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO)]))
    for name in ("LEADER360V_EXECUTION", "AIRFLOW_VAR_LEADER360V_EXECUTION", "AIRFLOW_CONN_KUBERNETES_DEFAULT"):
        env.pop(name, None)
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(REPO / "dags"), json.dumps(cases)],
                          capture_output=True, text=True, env=env, timeout=900)
    log = proc.stdout + proc.stderr
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, log[-5000:]
    logs = {}
    for name in cases:
        start, end = log.find(f"=== CASE {name} ==="), log.find(f"=== END {name} ===")
        logs[name] = log[start:end]
    return json.loads(line[len("RESULT "):]), logs


def assert_failed_once_before_any_video(res: dict, log: str) -> str:
    """The failure text of discover, after checking nothing was retried and no video was touched."""
    assert res["state"] == "failed", res
    assert res["tis"]["discover[-1]"] == ["failed", 1], res["tis"]
    assert res["tis"]["summary[-1]"] == ["failed", 1], res["tis"]
    for ti, (state, tries) in res["tis"].items():
        if ti.startswith("video."):
            assert state in ("upstream_failed", "None") and tries <= 1, (ti, state, tries)   # never ran
    assert "TypeError" not in log
    msg = log[log.find("AirflowFailException: "):]
    assert "with this run's request; nothing was labeled" in msg, log[-3000:]
    return msg


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_clip):
    from tasks.storage import LocalStore

    s = LocalStore(tmp_path_factory.mktemp("badstore"))
    s.put_file("raw/2026-11-24/clip.mp4", tiny_clip / "clip.mp4")
    return s


@pytest.fixture(scope="module")
def local_cases(airflow_db, store):
    cases = {
        "typo": {"conf": {"keys": ["raw/2026-11-24/clip.mp4"], "config_overrides": {"refine.tua": 0.004}}},
        "wrong_type": {"conf": {"keys": ["raw/2026-11-24/clip.mp4"], "config_overrides": {"refine.tau": "small"}}},
        "nested_typo": {"conf": {"keys": ["raw/2026-11-24/clip.mp4"], "config_overrides": {"refine": {"tua": 1}}}},
        "bad_value": {"conf": {"keys": ["raw/2026-11-24/clip.mp4"], "config_overrides": {"video.width": 511}}},
        "missing_key": {"conf": {"keys": ["raw/2026-11-24/clpi.mp4"]}},
        "empty_prefix": {"conf": {"prefix": "raw/2026-11-2/"}},
        "variable": {"conf": {"keys": ["raw/2026-11-24/clip.mp4"]},
                     "env": {"AIRFLOW_VAR_LEADER360V_EXECUTION": "celery"}},
        "everything_at_once": {"conf": {"keys": ["raw/2026-11-24/clpi.mp4"], "config_overrides": {"video.width": 511}}},
        # a valid request whose propagate stage fails permanently (its model file is not there)
        "stage_fails": {"conf": {"keys": ["raw/2026-11-24/clip.mp4"], "config_overrides": {
            "propagate.backend": "sam2", "propagate.sam2_checkpoint": "/nonexistent/sam2.pt"}}},
    }
    return run_cases(cases, store.root)


def test_schema_refuses_unknown_settings_and_wrong_types_before_a_run_exists(local_cases):
    res, _ = local_cases
    assert "ParamValidationError" in res["typo"]["refused"] and "'refine.tua' was unexpected" in res["typo"]["refused"]
    assert "'small' is not of type 'number'" in res["wrong_type"]["refused"]
    assert "'tua' was unexpected" in res["nested_typo"]["refused"]


def test_a_bad_value_fails_discover_once(local_cases):
    res, logs = local_cases
    msg = assert_failed_once_before_any_video(res["bad_value"], logs["bad_value"])
    assert "config_overrides: video: Value error, video.width must be even" in msg
    assert res["bad_value"]["first_failure_s"] < 60     # issue 11: was ~4 minutes of retries


def test_a_key_not_in_the_store_fails_once_with_the_likely_key(local_cases, store):
    res, logs = local_cases
    msg = assert_failed_once_before_any_video(res["missing_key"], logs["missing_key"])
    assert f"key 'raw/2026-11-24/clpi.mp4' does not exist in {store.uri()}: did you mean 'raw/2026-11-24/clip.mp4'?" in msg


def test_an_empty_prefix_match_fails_once_naming_the_prefixes_that_exist(local_cases):
    res, logs = local_cases
    msg = assert_failed_once_before_any_video(res["empty_prefix"], logs["empty_prefix"])
    assert "prefix 'raw/2026-11-2/' matches no upload" in msg and "did you mean 'raw/2026-11-24/'?" in msg


def test_a_wrong_execution_variable_fails_once_naming_the_fix(local_cases):
    res, logs = local_cases
    msg = assert_failed_once_before_any_video(res["variable"], logs["variable"])
    assert "Airflow Variable leader360v_execution='celery' is not an execution mode: set it to local or kubernetes" in msg


def test_every_problem_is_listed_in_one_failure(local_cases):
    res, logs = local_cases
    msg = assert_failed_once_before_any_video(res["everything_at_once"], logs["everything_at_once"])
    assert "2 problems with this run's request" in msg
    assert "video.width must be even" in msg and "did you mean 'raw/2026-11-24/clip.mp4'?" in msg


def test_kubernetes_mode_without_its_connection_fails_once_naming_it(airflow_db, store):
    res, logs = run_cases({"no_connection": {"conf": {"keys": ["raw/2026-11-24/clip.mp4"]}}}, store.root,
                          {"LEADER360V_EXECUTION": "kubernetes"})
    msg = assert_failed_once_before_any_video(res["no_connection"], logs["no_connection"])
    assert "kubernetes mode needs the Airflow connection 'kubernetes_default'" in msg
    assert "AIRFLOW_CONN_KUBERNETES_DEFAULT" in msg


def test_a_run_where_a_stage_failed_ends_failed_with_its_summary(local_cases):
    """issue 11: a run in which every video failed was green. A stage failing for a reason other
    than rejected input fails the run, after the summary table names the upload and the stage."""
    res, logs = local_cases
    r, log = res["stage_fails"], logs["stage_fails"]
    assert r["state"] == "failed", r
    assert r["tis"]["video.propagate[0]"] == ["failed", 1]            # permanent: not retried
    assert r["tis"]["video.sdr[0]"][0] == "success" and r["tis"]["video.refine[0]"][0] == "upstream_failed"
    assert r["tis"]["summary[-1]"][0] == "success" and r["tis"]["publish_ready[-1]"][0] == "skipped"
    assert r["tis"]["outcome[-1]"] == ["failed", 1]
    assert "SAM2 checkpoint '/nonexistent/sam2.pt' does not exist" in log
    import re

    assert re.search(r"\| `raw/2026-11-24/clip.mp4` \| [0-9a-f]{16} \| failed \| propagate failed; see that task's log \|",
                     log)
    assert "1 of 1 upload(s) failed (1 failed)" in log
    assert "No video became ready in this run (1 failed)" in log
