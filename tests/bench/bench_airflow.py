"""Airflow as deployed (tests/deployed/deployment.py): start-up time and time to a visible mistake.

* **start -> DAGs listed**: from launching Airflow in a fresh home to ``GET /api/v2/dags`` listing both
  DAGs, (a) ``airflow standalone`` (creates its database itself), (b) the four components as separate
  processes after ``airflow db migrate`` (its time is a row of its own). Also when every component's
  heartbeat is healthy.
* **a mistake -> first failure**: ``leader360v_nightly`` triggered through the REST API with ``keys``
  on a tiny uploaded clip and (a) ``config_overrides={"refine.tua": 0.004}`` (issue 11: ~4 minutes and
  a green run before the fail-fast), (b) a key that is not in the store. Seconds from the trigger
  request to the refusal (HTTP 400 from the trigger form's schema: no run is created) or to the first
  task instance in state ``failed``; where it failed, the run's state and end, the tries.

    .venv/bin/python tests/bench/bench_airflow.py [--skip-standalone] [--skip-typo]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, emit

sys.path.insert(0, str(REPO))
from tests.deployed.deployment import Deployment, DeploymentError, upload_clip  # noqa: E402

NIGHTLY, RELEASE = "leader360v_nightly", "leader360v_release"
KEY = "raw/bench/clip.mp4"
TYPO = {"refine.tua": 0.004}


def dags_listed(dep: Deployment):
    return {NIGHTLY, RELEASE} <= set(dep.dags()) or None


def startup(dep: Deployment, how: str) -> list[dict]:
    dep.wait_for("both DAGs listed", lambda: dags_listed(dep), timeout=600, every=0.5)
    listed = time.monotonic() - dep.started_at
    errors = len(dep.import_errors())
    dep.wait_for("all components healthy", dep.healthy, timeout=600, every=0.5)
    healthy = time.monotonic() - dep.started_at
    return [{"measure": f"{how}: start -> both DAGs listed (REST)", "seconds": round(listed, 1),
             "detail": f"{errors} DAG import errors"},
            {"measure": f"{how}: start -> every heartbeat healthy", "seconds": round(healthy, 1), "detail": ""}]


def prepare_runs(dep: Deployment) -> None:
    upload_clip(dep, KEY)
    for dag_id in (NIGHTLY, RELEASE):
        dep.unpause(dag_id)
    # unpausing creates the latest scheduled run (catchup off); max_active_runs=1 would queue ours behind it
    dep.wait_for("no nightly run active", lambda: all(r["state"] not in ("queued", "running")
                                                      for r in dep.runs(NIGHTLY)) or None, timeout=600, every=1.0)


def mistake(dep: Deployment, run_id: str, conf: dict) -> dict:
    """Trigger a run with a mistake; seconds until Airflow shows it failed (HTTP refusal or failed task)."""
    t0 = time.monotonic()
    try:
        dep.trigger(NIGHTLY, run_id, conf)
    except DeploymentError as exc:          # refused by the trigger form's JSON schema: no run at all
        seconds = time.monotonic() - t0
        message = str(exc).split("\n")[0]
        return {"seconds": seconds, "where": "trigger refused (HTTP 400)", "run_end_s": None,
                "run_state": "no run", "tries": {}, "message": message[:160]}
    first: dict | None = None
    while True:
        tis = dep.task_instances(NIGHTLY, run_id)
        failed = [t for t in tis if t["state"] == "failed"]
        if failed and first is None:
            first = {"seconds": time.monotonic() - t0, "task": failed[0]["task_id"], "ti": failed[0]}
        run = dep.run(NIGHTLY, run_id)
        if run["state"] in ("success", "failed"):
            break
        if time.monotonic() - t0 > 1800:
            raise TimeoutError(f"the {run_id} run did not end within 30 minutes")
        time.sleep(0.5)
    end = time.monotonic() - t0
    where = "no task failed"
    if first:
        ti = first["ti"]
        # where the time went: waiting for the scheduler and a worker slot, then the task process itself
        waited = _iso(ti["start_date"]) - _iso(run["queued_at"]) if ti.get("start_date") and run.get("queued_at") else None
        where = f"{first['task']} (task ran {ti.get('duration') or 0:.1f} s"
        where += f", started {waited:.1f} s after the run was queued)" if waited is not None else ")"
    return {"seconds": first["seconds"] if first else None, "where": where,
            "run_end_s": round(end, 1), "run_state": run["state"],
            "tries": {t["task_id"]: t["try_number"] for t in tis if t["state"] in ("failed", "up_for_retry")},
            "message": ""}


def _iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-standalone", action="store_true")
    ap.add_argument("--skip-typo", action="store_true")
    a = ap.parse_args()
    rows, summary = [], {}

    if not a.skip_standalone:
        with tempfile.TemporaryDirectory(prefix="bench-standalone-") as tmp:
            dep = Deployment(Path(tmp))
            dep.lay_out()
            dep.start_standalone()
            try:
                rows += startup(dep, "airflow standalone (creates its database; api-server with the default 4 workers)")
            finally:
                dep.stop()
        summary["standalone_dags_listed_s"] = rows[-2]["seconds"]

    with tempfile.TemporaryDirectory(prefix="bench-components-") as tmp:
        dep = Deployment(Path(tmp))
        dep.lay_out()
        t = time.monotonic()
        dep.airflow("db", "migrate")
        rows.append({"measure": "airflow db migrate (fresh SQLite)", "seconds": round(time.monotonic() - t, 1),
                     "detail": ""})
        dep.airflow("pools", "import", str(dep.home / "leader360v" / "pools.json"))
        dep.start()
        try:
            rows += startup(dep, "4 components (api-server --workers 1)")
            summary["components_dags_listed_s"] = rows[-2]["seconds"]
            if not a.skip_typo:
                prepare_runs(dep)
                for name, run_id, conf in (
                        ("typo in config_overrides", "typo", {"keys": [KEY], "config_overrides": TYPO}),
                        ("key not in the store", "missing_key", {"keys": ["raw/bench/clip.mov"]})):
                    m = mistake(dep, run_id, conf)
                    summary[f"{run_id}_first_failure_s"] = round(m["seconds"], 2) if m["seconds"] else None
                    summary[f"{run_id}_run_state"] = m["run_state"]
                    rows.append({"measure": f"{name}: trigger -> first failure",
                                 "seconds": round(m["seconds"], 2) if m["seconds"] is not None else None,
                                 "detail": f"{m['where']}; run {m['run_state']}"
                                           + (f" after {m['run_end_s']} s; tries {m['tries']}" if m["run_end_s"] else "")
                                           + (f"; {m['message']}" if m["message"] else "")})
        finally:
            dep.stop()
    return emit("airflow", rows, summary)


if __name__ == "__main__":
    main()
