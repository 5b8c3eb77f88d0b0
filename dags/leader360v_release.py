"""
### leader360v_release — quality-gated dataset release

Runs when `leader360v_nightly` marks videos ready (asset `leader360v_ready_videos`) and on
demand. Three steps:

1. **candidate** — every ready video (newest validated run, or the runs of `config_hash`),
   merged into one YouTube-VIS document with deterministic splits, staged out of sight;
2. **quality_gate** — Great Expectations suites on every video's tables and on the release
   tables (frames labeled or explicitly empty, non-overlapping masks, areas equal to RLE areas,
   one class per track, vocabulary, coverage, row counts, unique ids, splits). If any
   expectation fails this task fails, its log lists the failed expectations, and **nothing is
   published**;
3. **publish** — `releases/vN/` with annotations, id maps, frames, splits, a manifest with the
   sha256 of every file, the GX report with its Data Docs (`data_docs/index.html`) and a dataset
   card; `_MANIFEST.json` is written last. The asset event `leader360v_releases` carries the
   version, the release's location and its counts. When another release published the same
   content while this one waited, nothing is written and **no asset event** is emitted (the task
   ends *skipped*, saying "unchanged: vN already holds these labels"), so the consumers of
   `leader360v_releases` do not run again for a release they already had.

One configuration per video: the newest one that passed its quality suite (or `config_hash`);
the dataset card says which, and why. A candidate identical to the latest release (same videos,
same configurations) is skipped, so a burst of nightly or backfill runs publishes once.
"""

from __future__ import annotations

from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from leader360v_airflow import settings
from leader360v_airflow.stage_tasks import worker_executor_config

READY_VIDEOS = Asset("leader360v_ready_videos")
RELEASES = Asset("leader360v_releases")


@dag(
    dag_id="leader360v_release",
    schedule=[READY_VIDEOS],
    doc_md=__doc__,
    **settings.DAG_POLICY,
    tags=["leader360v", "release"],
    params={
        "config_hash": Param(None, type=["null", "string"], title="Configuration hash",
                             description="Release only the runs of this configuration (default: newest per video)."),
        "config_overrides": Param({}, type="object", title="Configuration overrides (release thresholds)"),
    },
)
def leader360v_release():
    # kubernetes mode: these stay worker tasks, sized by the pod table's `release` row
    release_pod = worker_executor_config("release")

    @task(retries=0, executor_config=release_pod)
    def candidate() -> dict:
        from tasks.stages.release import NothingToRelease, prepare_candidate

        p = get_current_context()["params"]
        try:
            return prepare_candidate(settings.store(), settings.pipeline_config(p.get("config_overrides")),
                                     config_hash=p.get("config_hash"))
        except NothingToRelease as exc:
            raise AirflowSkipException(str(exc)) from exc

    @task(retries=0, executor_config=release_pod)
    def quality_gate(cand: dict) -> dict:
        from tasks.errors import QualityGateFailed
        from tasks.stages.release import validate_candidate

        p = get_current_context()["params"]
        try:
            gate = validate_candidate(settings.store(), cand["candidate"],
                                      settings.pipeline_config(p.get("config_overrides")))
        except QualityGateFailed as exc:
            raise AirflowFailException(str(exc)) from exc
        print(f"quality gate passed: {gate['passed']} of {gate['expectations']} expectations")
        return gate

    @task(outlets=[RELEASES], executor_config=release_pod)
    def publish(cand: dict, gate: dict) -> dict:
        from tasks.stages.release import publish_candidate

        out = publish_candidate(settings.store(), cand["candidate"])
        if out["unchanged"]:
            # another release published this content while this one waited for the publish lease
            # (tasks.stages.release): nothing new was written, so no event may say otherwise. A task
            # that ends skipped emits no outlet event (Airflow 3's task runner sends outlet events
            # only with SucceedTask), so downstream consumers do not re-run for nothing.
            raise AirflowSkipException(
                f"unchanged: v{out['version']} already holds these labels ({out['uri']}: {out['videos']} "
                f"video(s), {out['objects']} object(s)); nothing published, no asset event")
        # what a consumer of the asset needs without opening the store: which version, where
        get_current_context()["outlet_events"][RELEASES].extra = {
            k: out[k] for k in ("version", "uri", "prefix", "videos", "objects", "files", "runs", "data_docs")}
        print(f"published release v{out['version']} at {out['uri']}: {out['videos']} video(s), "
              f"{out['objects']} object(s); Data Docs: {out['data_docs']}")
        return out

    cand = candidate()
    publish(cand, quality_gate(cand))


leader360v_release()
