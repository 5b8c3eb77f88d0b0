"""
### leader360v_revise — bring a person's corrections back into the dataset

Triggered by corrections landing: every 10 minutes `discover` looks under
`corrections/inbox/{video_id}/` for CVAT XML (*Export task dataset → CVAT for video 1.1*) or
release JSON files, and skips the run when there is none. For each video with files, `revise`
takes them in order, each one:

`import` (checked against the video and the run it was exported from: same video, sizes, frame
range, classes in the vocabulary, no overlapping masks, ids existing or new, masks only,
keyframes only; stored under `corrections/{video_id}/` with who and when) → `re-follow` (the
corrected objects followed forward and backward from the corrected frames, keeping every id;
corrected frames marked human) → `qa` → `validate` (the Great Expectations suites), which makes a
**new run** whose configuration hash includes the corrections. Nothing of an import is visible
until its last step committed; a file with problems moves to `corrections/inbox/_rejected/` with
`NAME.problems.json` listing every one, a done file to `corrections/inbox/_done/`. Two imports
for one video never run at once (a lease per video).

`publish_ready` then updates the asset `leader360v_ready_videos`, which triggers
`leader360v_release`: a corrected video counts as human-reviewed in the dataset card.

The same from a shell: `python -m tasks review import FILE --video-id ID`.
Code: `tasks/review/` (inbox, revise, refollow, corrections).
"""

from __future__ import annotations

from airflow.sdk import Asset, CronTriggerTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from leader360v_airflow import settings

READY_VIDEOS = Asset("leader360v_ready_videos")


@dag(
    dag_id="leader360v_revise",
    schedule=CronTriggerTimetable("*/10 * * * *", timezone="UTC"),
    doc_md=__doc__,
    **settings.DAG_POLICY,
    tags=["leader360v", "review"],
)
def leader360v_revise():
    @task
    def discover() -> list[dict]:
        from tasks.review.inbox import pending

        found = pending(settings.store())
        if not found:
            raise AirflowSkipException("no corrections under corrections/inbox/: nothing to revise")
        for vid, keys in found.items():
            print(f"video {vid}: {len(keys)} correction file(s): {', '.join(keys)}")
        return [{"video_id": v, "keys": k} for v, k in found.items()]

    @task(map_index_template="{{ revise_label }}")
    def revise(item: dict) -> dict:
        """import -> re-follow -> qa -> validate, file by file (tasks/review/revise.py)."""
        from tasks.review.inbox import process

        get_current_context()["revise_label"] = item["video_id"]
        results = process(settings.store(), item["video_id"], item["keys"])
        for r in results:
            if r["status"] == "rejected":
                print(f"{r['file']}: rejected, nothing imported:\n  - " + "\n  - ".join(r["problems"]))
            else:
                print(f"{r['file']}: correction {r['correction']} -> run {r['run']} (frames {r['frames']}, "
                      f"re-followed {r['refollowed']}); QA flags now {r['qa_flags']}")
        return {"video_id": item["video_id"], "results": results}

    @task(outlets=[READY_VIDEOS])
    def publish_ready(done: list[dict]) -> dict:
        revised = [(d["video_id"], r["run"]) for d in done for r in d["results"] if r.get("status") == "imported"]
        if not revised:
            raise AirflowSkipException("no correction was imported (see revise's log), so no video became ready")
        get_current_context()["outlet_events"][READY_VIDEOS].extra = {
            "videos": sorted({v for v, _ in revised}), "runs": sorted({r for _, r in revised}), "revised": True}
        return {"ready": len(revised)}

    publish_ready(revise.expand(item=discover()))


leader360v_revise()
