"""Run and task states from Airflow's own database, read inside the api-server (issue 14).

The api-server may use the ORM (tasks may not: docs/reference/airflow3_notes.md §0.5); the dashboard
reads Airflow's state here rather than keeping a copy of it. Each method is one small query.
:class:`NoAirflow` answers "nothing known" for a dashboard run outside Airflow (benchmarks).
"""

from __future__ import annotations

import datetime as _dt
import logging

from leader360v_airflow.dashboard.auth import NIGHTLY_DAG, RELEASE_DAG

log = logging.getLogger(__name__)

GROUP = "video."          # the nightly DAG's mapped task group (dags/leader360v_nightly.py)
GPU_POOL = "gpu"


def _state(s) -> str | None:
    """A task-instance state as its plain name (``failed``), whether the ORM gives an enum or a str."""
    return None if s is None else str(getattr(s, "value", s))


class NoAirflow:
    """No Airflow database: no failures, pools or task instances known."""

    available = False

    def failed_uploads(self, since: _dt.datetime) -> list[dict]:
        return []

    def pools(self) -> list[dict]:
        return []

    def stage_tasks(self, key: str) -> list[dict]:
        return []

    def run_keys(self, dag_id: str, run_id: str) -> list[str]:
        return []

    def task_key(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
        return None

    def release_of_run(self, dag_id: str, run_id: str) -> int | None:
        return None


class AirflowDB(NoAirflow):
    """Queries on the metadata DB of the api-server this plugin runs in."""

    available = True

    def failed_uploads(self, since: _dt.datetime) -> list[dict]:
        """The newest try of every upload whose stage task failed since ``since``: key, stage, when."""
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        out: dict[str, dict] = {}
        with create_session() as session:
            rows = session.execute(
                select(TI.task_id, TI.rendered_map_index, TI.state, TI.end_date, TI.run_id)
                .where(TI.dag_id == NIGHTLY_DAG, TI.task_id.like(GROUP + "%"), TI.end_date >= since)
                .order_by(TI.end_date)).all()
        for task_id, key, state, end, run_id in rows:
            if not key:
                continue
            if _state(state) == "failed":
                out[key] = {"key": key, "stage": task_id[len(GROUP):], "when": end.isoformat() if end else "",
                            "run_id": run_id}
            elif key in out and _state(state) == "success" and task_id.endswith(".validate"):
                out.pop(key)   # a later run of the same upload got through
        return list(out.values())

    def pools(self) -> list[dict]:
        from airflow.models.pool import Pool

        stats = Pool.slots_stats()
        rows = []
        for name, s in sorted(stats.items(), key=lambda kv: (kv[0] != GPU_POOL, kv[0])):
            total = s["total"]
            rows.append({"pool": name, "total": None if total == float("inf") else int(total),
                         "running": s["running"], "queued": s["queued"], "deferred": s["deferred"],
                         "scheduled": s["scheduled"],
                         "open": None if s["open"] == float("inf") else int(s["open"])})
        return rows

    def stage_tasks(self, key: str) -> list[dict]:
        """Every stage task instance of one upload (by its raw key), newest run first."""
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(TI.dag_id, TI.run_id, TI.task_id, TI.map_index, TI.state, TI.try_number, TI.start_date,
                       TI.end_date)
                .where(TI.dag_id == NIGHTLY_DAG, TI.rendered_map_index == key, TI.task_id.like(GROUP + "%"))
                .order_by(TI.start_date.desc())).all()
        return [{"dag_id": d, "run_id": r, "task_id": t, "stage": t[len(GROUP):], "map_index": m,
                 "state": _state(s), "try_number": n,
                 "start": sd.isoformat(timespec="seconds") if sd else None,
                 "end": ed.isoformat(timespec="seconds") if ed else None} for d, r, t, m, s, n, sd, ed in rows]

    def run_keys(self, dag_id: str, run_id: str) -> list[str]:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            keys = session.scalars(select(TI.rendered_map_index).where(
                TI.dag_id == dag_id, TI.run_id == run_id, TI.task_id == GROUP + "ingest")).all()
        return sorted({k for k in keys if k})

    def task_key(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            return session.scalar(select(TI.rendered_map_index).where(
                TI.dag_id == dag_id, TI.run_id == run_id, TI.task_id == task_id, TI.map_index == map_index))

    def release_of_run(self, dag_id: str, run_id: str) -> int | None:
        """The version a release DAG run published (its ``leader360v_releases`` asset event)."""
        from airflow.models.asset import AssetEvent
        from airflow.utils.session import create_session
        from sqlalchemy import select

        if dag_id != RELEASE_DAG:
            return None
        with create_session() as session:
            extras = session.scalars(select(AssetEvent.extra).where(
                AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)).all()
        for extra in extras:
            if isinstance(extra, dict) and isinstance(extra.get("version"), int):
                return extra["version"]
        return None
