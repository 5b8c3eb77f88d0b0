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
* **Mistakes fail fast**: `discover` checks the whole request before any video is touched
  (`config_overrides` settings and types, `keys` in the store, a `prefix` that matches
  something, the execution mode, the Kubernetes connection in kubernetes mode) and fails once,
  without retry, listing everything to fix. The trigger form already refuses unknown settings
  and wrong types.
* **The run's state tells the truth**: `summary` writes a table of every upload (ready,
  quarantined with the reason, duplicate, failed at which stage) to its log; `publish_ready`
  updates the asset `leader360v_ready_videos` (which triggers `leader360v_release`) when at least
  one video passed its quality suite; `outcome` fails the run when any upload failed for a reason
  other than rejected or duplicate input. A run whose uploads were all rejected or duplicates is
  green, with the table in `summary`'s log saying so.
* **Human gate** (issue 15): a ready video whose QA flags number more than this run's
  `review.gate_max_flags` (off by default; e.g. `{"review.gate_max_flags": 5}` in
  **config_overrides**; it changes no label, so it names no new run) is held
  (`reviews/{video_id}/{run}/decision.json`: pending) and waits at `review_gate`, a deferrable
  `ApprovalOperator` (no worker slot while it waits) whose body holds the annotation checker's
  summary and comments, and links to the preview, the labels and a CVAT task exported into the
  store; its form has a **comment** field. The answer is recorded in that file with who, when and
  the comment. **Approve** → `record_approval` updates `leader360v_ready_videos`: the video is
  ready for a release. **Reject** → the video stays out of every release and waits for
  corrections (`python -m tasks review import`, or a file under `corrections/inbox/{video_id}/`
  for the `leader360v_revise` DAG); the ops dashboard shows it rejected, with the comment. A
  decided video is not asked about again. The release takes only approved, corrected or
  unflagged videos.
* Uploads are matched to the data interval by their recorded upload time (`python -m tasks
  upload` records it, `--uploaded-at` for late imports; otherwise the store's time), so a
  backfill over a date range labels exactly that range's uploads.

Each stage runs in the Airflow worker (`local`) or as a pod in the GPU task image
(`kubernetes`), chosen by the Variable `leader360v_execution` or `LEADER360V_EXECUTION`; the
graph is the same in both (docs/DEPLOY.md).

Stage code: `tasks/stages/`; task wiring: `plugins/leader360v_airflow/stage_tasks.py`.
"""

from __future__ import annotations

from datetime import timedelta

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
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from leader360v_airflow import settings
from leader360v_airflow.review_gate import ReviewGateOperator, comment_form
from leader360v_airflow.stage_tasks import STAGE_ORDER, mapped_results, stage_task

READY_VIDEOS = Asset("leader360v_ready_videos")
GROUP = "video"


@dag(
    dag_id="leader360v_nightly",
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=pendulum.duration(days=1)),
    doc_md=__doc__,
    **settings.DAG_POLICY,
    tags=["leader360v", "labeling"],
    params={
        "keys": Param([], type="array", items={"type": "string", "pattern": "^raw/.*[^/]$"}, uniqueItems=True,
                      title="Object keys",
                      description="Label exactly these uploads (e.g. raw/2026-11-24/clip.mp4). Empty: use the data interval."),
        "prefix": Param(None, type=["null", "string"], pattern="^raw/", title="Prefix",
                        description="Label every upload under this prefix (e.g. raw/2026-11/), whatever its date."),
        "force": Param(False, type="boolean", title="Force", description="Recompute stages even if committed."),
        "config_overrides": Param({}, schema=settings.config_overrides_schema(), title="Configuration overrides",
                                  description='Dotted keys, e.g. {"refine.tau": 0.004, "video.fps": 10}; '
                                              "unknown settings and wrong types are refused."),
        "include_quarantined": Param(False, type="boolean", title="Retry quarantined uploads"),
        "max_videos": Param(500, type="integer", minimum=1, maximum=1000, title="Max videos per run"),
    },
)
def leader360v_nightly():
    @task
    def discover() -> list[str]:
        """Check the whole request, then list the uploads. A problem here is the operator's to fix
        (a typo, a missing connection): no retry can help, so the task fails once, listing all."""
        from tasks.discovery import check_overrides, describe_report, find_uploads
        from tasks.errors import RequestInvalid

        ctx = get_current_context()
        p = ctx["params"]
        problems = settings.deployment_problems() + check_overrides(p.get("config_overrides"))
        keys: list[str] = []
        if not any(pr.startswith("the object store") for pr in problems):
            try:
                keys, report = find_uploads(
                    settings.store(), start=ctx.get("data_interval_start"), end=ctx.get("data_interval_end"),
                    keys=p.get("keys") or None, prefix=p.get("prefix"),
                    include_quarantined=p.get("include_quarantined", False), limit=int(p.get("max_videos", 500)),
                )
            except RequestInvalid as exc:
                problems += exc.problems
        if problems:
            raise AirflowFailException(str(RequestInvalid(problems)))
        print(describe_report(keys, report))
        return keys

    @task_group(group_id=GROUP)
    def process_video(key: str):
        result = stage_task("ingest")(key)
        for stage in STAGE_ORDER[1:]:
            result = stage_task(stage)(result)
        return result

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def summary(keys: list[str] | None, results) -> dict:
        """What became of every upload, as a table in this task's log (and its XCom)."""
        from tasks.discovery import counts_sentence, summarize, summary_table

        if keys is None:  # discover failed: its log lists what to fix
            raise AirflowFailException("discover failed, so no video was labeled; its log lists what to fix")
        ctx = get_current_context()
        states = _stage_states(ctx, len(keys))
        done = {r.get("key") for r in mapped_results(results)}
        s = summarize(settings.store(), keys, mapped_results(results), states, tuple(STAGE_ORDER),
                      _ingested_ids(ctx, [i for i, k in enumerate(keys)
                                          if k not in done and states.get(i, {}).get("ingest") == "success"]))
        s["table"] = summary_table(s)
        s["sentence"] = counts_sentence(s["counts"])
        print(f"Run summary: {s['sentence']}.\n\n{s['table']}")
        return s

    @task(outlets=[READY_VIDEOS])
    def publish_ready(s: dict) -> dict:
        """Announce the ready videos the human gate lets through; the held ones are recorded as
        held *before* the event goes out, so a release it triggers already leaves them out."""
        ready = [r for r in s["videos"] if r["status"] == "ready"]
        gate = _gate(ready)
        for state, what in (("held", "wait at the human gate (review_gate)"),
                            ("rejected", "were rejected at the human gate and wait for corrections")):
            if stopped := sorted(v for (v, _), st in gate.items() if st == state):
                print(f"{len(stopped)} video(s) {what}: {', '.join(stopped)}")
        ready = [r for r in ready if gate[(r["video_id"], r["run"])] in ("ready", "approved")]
        if not ready:
            raise AirflowSkipException(f"No video became ready in this run ({s['sentence']}), so the release "
                                       "DAG is not triggered; the summary task's log has the table.")
        get_current_context()["outlet_events"][READY_VIDEOS].extra = {
            "videos": [r["video_id"] for r in ready], "keys": [r["key"] for r in ready],
            "runs": sorted({r["run"] for r in ready}), "counts": s["counts"], "summary": s["table"]}
        print(f"{len(ready)} video(s) ready for a release: {', '.join(r['video_id'] for r in ready)}")
        return {"ready": len(ready)}

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def outcome(s: dict) -> str:
        """Fail the run when an upload failed for a reason other than rejected or duplicate input
        (those are the pipeline doing its job), after the summary and the asset event are out."""
        failed = [r for r in s["videos"] if r["status"] == "failed"]
        if failed:
            raise AirflowFailException(
                f"{len(failed)} of {len(s['videos'])} upload(s) failed ({s['sentence']}):\n\n{s['table']}")
        print(f"Every upload is accounted for: {s['sentence']}.")
        return s["sentence"]

    @task
    def review_requests(s: dict) -> list[dict]:
        """The ready videos held for a person (more QA flags than this run's
        `review.gate_max_flags`, no decision yet), each with the gate's subject and body (checker
        summary, comments, links; a CVAT task exported into the store). None: `review_gate` is
        skipped."""
        from tasks.review.approval import gate_request

        store = settings.store()
        ready = [r for r in s["videos"] if r["status"] == "ready"]
        limit = _gate_limit()
        reqs = [gate_request(store, v, run, limit) for (v, run), st in sorted(_gate(ready).items()) if st == "held"]
        for r in reqs:
            print(r["subject"])
        return reqs

    @task(outlets=[READY_VIDEOS], map_index_template="{{ review_label }}")
    def record_approval(request: dict) -> dict:
        """Runs only on Approve (Reject skips it): the gate recorded who approved
        (ReviewGateOperator), so the video is ready and the asset event says so."""
        from tasks.review.approval import APPROVED, decision

        ctx = get_current_context()
        ctx["review_label"] = request["video_id"]
        rec = decision(settings.store(), request["video_id"], request["run"]) or {}
        if rec.get("decision") != APPROVED:
            raise AirflowFailException(
                f"video {request['video_id']} run {request['run']}: review_gate recorded no approval "
                f"({rec.get('decision') or 'no decision'} in reviews/{request['video_id']}/{request['run']}/decision.json)")
        ctx["outlet_events"][READY_VIDEOS].extra = {"videos": [request["video_id"]], "runs": [request["run"]],
                                                    "approved_by": rec["by"]}
        print(f"video {request['video_id']} run {request['run']} approved by {rec['by']}: ready for a release")
        return rec

    keys = discover()
    results = process_video.expand(key=keys)
    s = summary(keys, results)
    publish_ready(s) >> outcome(s)
    reqs = review_requests(s)
    # the form's comment field goes in partial(): a mapped task is built from the mapped operator's
    # params, so a default set in the operator's __init__ would never reach the reviewer's form
    gate = ReviewGateOperator.partial(
        # one quick retry: it completes from the recorded answer when the scheduler failed the
        # resumed gate on a stale event (review_gate.py; apache/airflow#72716)
        task_id="review_gate", retries=1, retry_delay=timedelta(seconds=5), retry_exponential_backoff=False,
        response_timeout=None, map_index_template="{{ task.subject }}", params=comment_form(),
    ).expand_kwargs(reqs.map(_gate_kwargs))
    gate >> record_approval.expand(request=reqs)


def _gate_kwargs(request: dict) -> dict:
    return {"subject": request["subject"], "body": request["body"], "video_id": request["video_id"],
            "run": request["run"]}


def _gate_limit() -> int | None:
    """`review.gate_max_flags` of the configuration this DAG run uses (not part of the run hash)."""
    return settings.pipeline_config(get_current_context()["params"].get("config_overrides")).review.gate_max_flags


def _gate(ready: list[dict]) -> dict[tuple[str, str], str]:
    """(video, run) -> the human gate's verdict on each ready video under this DAG run's limit,
    recorded in the store (tasks/review/approval.py ``apply_gate``): ready, approved, held or
    rejected."""
    if not ready:
        return {}
    from tasks.review.approval import apply_gate

    store, limit = settings.store(), _gate_limit()
    by = f"leader360v_nightly {get_current_context()['run_id']}"
    return {(r["video_id"], r["run"]): apply_gate(store, r["video_id"], r["run"], limit, by=by) for r in ready}


def _stage_states(ctx, n: int) -> dict[int, dict[str, str]]:
    """map index -> stage -> state of this run's stage tasks (through the Task SDK; empty when the
    execution API cannot answer, e.g. outside a worker)."""
    ti = ctx["ti"]
    try:
        raw = ti.get_task_states(dag_id=ti.dag_id, task_group_id=GROUP, run_ids=[ti.run_id])
    except Exception as exc:  # noqa: BLE001 - the summary still names ready/quarantined uploads
        print(f"could not read the stage states ({exc}); failed uploads are listed without their stage")
        return {}
    out: dict[int, dict[str, str]] = {}
    for name, state in (raw.get(ti.run_id) or {}).items():
        task_id, _, index = name.rpartition("_")
        if task_id.startswith(GROUP + ".") and index.isdigit() and int(index) < n:
            out.setdefault(int(index), {})[task_id[len(GROUP) + 1:]] = str(state) if state else ""
    return out


def _ingested_ids(ctx, indexes: list[int]) -> dict[int, str]:
    """map index -> video id from ingest's results, for uploads that stopped after ingest."""
    if not indexes:
        return {}
    try:
        pulled = ctx["ti"].xcom_pull(task_ids=f"{GROUP}.ingest", map_indexes=indexes)
    except Exception as exc:  # noqa: BLE001 - the table just shows no id then
        print(f"could not read ingest's results ({exc}); failed uploads are listed without their video id")
        return {}
    return {i: r["video_id"] for i, r in zip(indexes, pulled or []) if isinstance(r, dict) and r.get("video_id")}


leader360v_nightly()
