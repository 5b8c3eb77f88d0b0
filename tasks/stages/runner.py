"""Run one stage under the stage contract.

* **idempotent**: a stage whose committed manifest exists, and whose upstream manifests are the
  ones it was computed from, is skipped unless ``force``; a new config hash writes beside;
* **atomic**: leftovers of an interrupted attempt are cleared, outputs are written, then the
  manifest; readers only ever resolve outputs through a manifest;
* **honest failure**: :class:`InputRejected` quarantines the video with its reason; every other
  error propagates unchanged (Airflow retries it when it is not a :class:`PermanentError`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from tasks import __version__, layout
from tasks.config import PipelineConfig
from tasks.errors import InputRejected, MissingUpstream, ObjectNotFound
from tasks.stages import STAGE_NAMES
from tasks.stages.contract import StageInputs, StageOutput, StageResult, StageWriter
from tasks.storage import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str
    upstream: tuple[str, ...]
    doc: str

    def function(self):
        return importlib.import_module(self.module).run


# The per-video chain, in order (docs/ARCHITECTURE.md, "The stage contract"). `release` works on many videos and lives
# in tasks.stages.release; it is not part of this chain.
STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in [
        StageSpec("ingest", "tasks.stages.ingest", (), "probe, validate, content-hash id, dedupe, stereo detection"),
        StageSpec("decode", "tasks.stages.decode", ("ingest",), "frames at the configured fps and width"),
        StageSpec("propose", "tasks.stages.propose", ("decode",), "entity + panoptic proposals on seam-aware tiles"),
        StageSpec("verify", "tasks.stages.verify", ("decode", "propose"), "cross-model vote, verifier for the rest"),
        StageSpec("sdr", "tasks.stages.sdr", ("decode", "propose", "verify"), "fuse, exclusive masks, stuff merge, prompts"),
        StageSpec("propagate", "tasks.stages.propagate", ("decode", "sdr"), "the tracking pass: masks on every frame, coverage checks, re-SDR, id re-linking"),
        StageSpec("refine", "tasks.stages.refine", ("decode", "propagate"), "offline post-pass: merged pieces take their object's id on earlier frames"),
        StageSpec("qa", "tasks.stages.qa", ("ingest", "decode", "refine"), "export, flags, preview"),
        StageSpec("validate", "tasks.stages.validate", ("qa",), "Great Expectations suites on the video's tables"),
    ]
}
if tuple(STAGES) != STAGE_NAMES:  # pragma: no cover - caught by every test run
    raise AssertionError(f"the stage table {list(STAGES)} differs from tasks.stages.STAGE_NAMES {STAGE_NAMES}")
ORDER = list(STAGE_NAMES)


def _digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def output_key(store: ObjectStore, manifest: dict, name: str) -> str:
    """Object key of output ``name`` of a committed stage manifest."""
    keys = manifest.get("keys")
    if keys is not None:
        return keys[name]
    return store.key_from_uri(manifest["outputs"][name])


def load_manifest(store: ObjectStore, video_id: str, run: str, stage: str) -> dict | None:
    try:
        return store.get_json(layout.manifest_key(video_id, run, stage))
    except ObjectNotFound:
        return None


def _result_from_manifest(store: ObjectStore, m: dict, status: str, seconds: float) -> StageResult:
    return StageResult(
        stage=m["stage"], video_id=m["video_id"], run=m["run"], status=status,
        manifest_uri=store.uri(layout.manifest_key(m["video_id"], m["run"], m["stage"])),
        outputs=m["outputs"], stats=m.get("stats", {}), seconds=seconds,
    )


def ensure_run_config(store: ObjectStore, video_id: str, config: PipelineConfig) -> None:
    """Record the configuration of a run next to its outputs (so a pod can reload it by hash)."""
    store.put_if_absent(layout.run_config_key(video_id, config.hash), config.canonical_json().encode())


def load_run_config(store: ObjectStore, video_id: str, run: str) -> PipelineConfig:
    try:
        data = store.get_json(layout.run_config_key(video_id, run))
    except ObjectNotFound:
        raise MissingUpstream(
            f"run {run} of video {video_id} has no recorded configuration; start it with a stage that "
            "receives the configuration (ingest, or any stage given --config)"
        ) from None
    return PipelineConfig.from_dict(data)


def quarantine(store: ObjectStore, video_id: str, key: str | None, stage: str, exc: InputRejected, run: str | None) -> str:
    """Quarantine a video whose content a stage rejected (the record: tasks/quarantine.py)."""
    from tasks.quarantine import quarantine_video

    return quarantine_video(store, video_id, key, stage, exc, run)


def execute(
    stage: str,
    *,
    store: ObjectStore,
    config: PipelineConfig,
    video_id: str | None = None,
    params: dict[str, Any] | None = None,
    force: bool = False,
) -> StageResult:
    """Run ``stage`` for one video under the contract and return its result.

    Under a lease per (video, run, stage) (issue 12; tasks/storage/lease.py): a second process on
    the same stage waits for the first (then finds its commit and skips) or fails with
    :class:`~tasks.errors.LeaseHeld` (exit 1) naming the holder; it never clears or overwrites the
    first one's files. The lease is checked again right before the commit point.
    """
    if stage == "ingest" or stage not in STAGES or video_id is None:
        return _execute(stage, store=store, config=config, video_id=video_id, params=params, force=force)
    from tasks.storage.lease import held_lease, stage_lease_key

    layout.check_video_id(video_id)
    with held_lease(store, stage_lease_key(video_id, config.hash, stage),
                    what=f"stage {stage} of video {video_id} run {config.hash}") as lease:
        return _execute(stage, store=store, config=config, video_id=video_id, params=params, force=force, lease=lease)


def _execute(
    stage: str,
    *,
    store: ObjectStore,
    config: PipelineConfig,
    video_id: str | None = None,
    params: dict[str, Any] | None = None,
    force: bool = False,
    lease=None,
) -> StageResult:
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(ORDER)}")
    spec = STAGES[stage]
    run = config.hash
    params = dict(params or {})
    t0 = time.perf_counter()

    if stage == "ingest":
        # ingest learns the video id from the content; its contract lives in the stage itself
        from tasks.stages import ingest

        return ingest.execute(store=store, config=config, params=params, force=force)

    if video_id is None:
        raise ValueError(f"stage {stage!r} needs a video id")
    layout.check_video_id(video_id)
    upstream: dict[str, dict] = {}
    for dep in spec.upstream:
        m = load_manifest(store, video_id, run, dep)
        if m is None:
            how = ("`python -m tasks ingest --key <its raw key>` with this configuration" if dep == "ingest"
                   else f"`python -m tasks {dep} --video-id {video_id} --run {run}`")
            raise MissingUpstream(
                f"stage {stage!r} of video {video_id} run {run} needs stage {dep!r} committed first (run {how})"
            )
        upstream[dep] = m
    upstream_digests = {dep: _digest(m) for dep, m in upstream.items()}

    mkey = layout.manifest_key(video_id, run, stage)
    existing = load_manifest(store, video_id, run, stage)
    if existing is not None and not force:
        if existing.get("upstream") == upstream_digests:
            log.info("stage %s of %s/%s already committed; skipping", stage, video_id, run)
            return _result_from_manifest(store, existing, "skipped", time.perf_counter() - t0)
        log.info("stage %s of %s/%s is stale (upstream changed); re-running", stage, video_id, run)

    ensure_run_config(store, video_id, config)
    prefix = layout.stage_prefix(video_id, run, stage)
    # Remove the old manifest first, then anything an interrupted attempt left behind.
    store.delete(mkey)
    store.delete_prefix(prefix)
    writer = StageWriter(store, prefix)
    inputs = StageInputs(video_id=video_id, run=run, upstream=upstream, params=params)
    started = _dt.datetime.now(_dt.UTC)
    try:
        out: StageOutput = spec.function()(inputs, config, store, writer)
    except InputRejected as exc:
        quarantine(store, video_id, params.get("key"), stage, exc, run)
        raise
    manifest = build_manifest(stage, video_id, run, config, out, writer, upstream_digests, started, t0)
    if lease is not None:
        lease.check()  # a process that lost its lease must not commit over the new holder's files
    store.put_json(mkey, manifest)  # the commit point
    return _result_from_manifest(store, manifest, "done", time.perf_counter() - t0)


def build_manifest(stage, video_id, run, config, out: StageOutput, writer: StageWriter, upstream_digests, started, t0) -> dict:
    return {
        "stage": stage,
        "video_id": video_id,
        "run": run,
        "config_hash": config.hash,
        "code_version": __version__,
        "started": started.isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 3),
        "upstream": upstream_digests,
        "outputs": {name: writer.store.uri(key) for name, key in out.outputs.items()},
        # store-relative keys: readers resolve by key, so a moved or mirrored store still works
        "keys": dict(out.outputs),
        "stats": out.stats,
        "files": writer.files,
    }


def run_chain(
    *,
    store: ObjectStore,
    config: PipelineConfig,
    key: str,
    until: str = "validate",
    force: bool = False,
    progress: bool = True,
) -> list[StageResult]:
    """Run ingest .. ``until`` for one raw object key, in process (the ``label`` path)."""
    results = [execute("ingest", store=store, config=config, params={"key": key}, force=force)]
    video_id = results[0].video_id
    for stage in ORDER[1:ORDER.index(until) + 1]:
        results.append(execute(stage, store=store, config=config, video_id=video_id, force=force,
                               params={"progress": progress}))
    return results
