"""
### leader360v_nightly — label new 360° uploads

Finds the videos uploaded under `raw/` during the run's data interval (or the object keys /
prefix given when triggered from the UI), and runs the Leader360V stages on each one in its
own mapped task group:

`ingest → decode → propose → verify → sdr → propagate → refine → qa → validate`

* One video's failure never stops the others. A video that cannot be labeled (not a video,
  truncated, not 2:1 ERP, no frames) is **quarantined** (`quarantine/{video_id}.json` says why)
  and its `ingest` fails without retry; a duplicate upload is skipped.
* Stages are idempotent: re-running a date, or re-triggering with the same configuration, skips
  every committed stage. Tick **force** to recompute. **config_overrides** (e.g.
  `{"refine.tau": 0.004}`) give a new configuration hash, so results are written beside the
  old ones — this is how a backfill after a threshold change works.
* When at least one video passes its quality suite, the asset `leader360v_ready_videos` is
  updated, which triggers `leader360v_release`.

Each stage runs in the Airflow worker (`local`) or as a pod in the GPU task image
(`kubernetes`), chosen by the Variable `leader360v_execution` or `LEADER360V_EXECUTION`; the
graph is the same in both (docs/DEPLOY.md).

Stage code: `tasks/stages/`; task wiring: `plugins/leader360v_airflow/stage_tasks.py`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import (
    Asset,
    CronTriggerTimetable,
    Param,
    TriggerRule,
    dag,
    get_current_context,
    task,
    task_group,
)
from airflow.sdk.exceptions import AirflowSkipException

from leader360v_airflow import settings
from leader360v_airflow.stage_tasks import STAGE_ORDER, mapped_results, stage_task

READY_VIDEOS = Asset("leader360v_ready_videos")


@dag(
    dag_id="leader360v_nightly",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=pendulum.duration(days=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=settings.DEFAULT_ARGS,
    tags=["leader360v", "labeling"],
    params={
        "keys": Param([], type="array", items={"type": "string"}, title="Object keys",
                      description="Label exactly these uploads (e.g. raw/2026-11-24/clip.mp4). Empty: use the data interval."),
        "prefix": Param(None, type=["null", "string"], title="Prefix",
                        description="Label every upload under this prefix (e.g. raw/2026-11/), whatever its date."),
        "force": Param(False, type="boolean", title="Force", description="Recompute stages even if committed."),
        "config_overrides": Param({}, type="object", title="Configuration overrides",
                                  description='Dotted keys, e.g. {"refine.tau": 0.004, "video.fps": 10}.'),
        "include_quarantined": Param(False, type="boolean", title="Retry quarantined uploads"),
        "max_videos": Param(500, type="integer", minimum=1, maximum=1000, title="Max videos per run"),
    },
)
def leader360v_nightly():
    @task
    def discover() -> list[str]:
        from tasks.discovery import find_uploads

        ctx = get_current_context()
        p = ctx["params"]
        keys, report = find_uploads(
            settings.store(), start=ctx.get("data_interval_start"), end=ctx.get("data_interval_end"),
            keys=p.get("keys") or None, prefix=p.get("prefix"), include_quarantined=p.get("include_quarantined", False),
            limit=int(p.get("max_videos", 500)),
        )
        print(f"{len(keys)} upload(s) to label; left out: {report}")
        return keys

    @task_group(group_id="video")
    def process_video(key: str):
        result = stage_task("ingest")(key)
        for stage in STAGE_ORDER[1:]:
            result = stage_task(stage)(result)
        return result

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[READY_VIDEOS])
    def publish_ready(keys: list[str], results):
        from tasks.discovery import summarize

        summary = summarize(settings.store(), keys, mapped_results(results))
        for row in summary["videos"]:
            print(row)
        ready = [r for r in summary["videos"] if r["status"] == "ready"]
        if not ready:
            raise AirflowSkipException(f"no video became ready in this run: {summary['counts']}")
        get_current_context()["outlet_events"][READY_VIDEOS].extra = {
            "videos": [r["video_id"] for r in ready], "runs": sorted({r["run"] for r in ready})}
        return summary

    keys = discover()
    results = process_video.expand(key=keys)
    publish_ready(keys, results)


leader360v_nightly()
