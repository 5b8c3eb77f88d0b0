"""ingest: probe, validate, content-hash id, dedupe, stereo/mono detection.

The video id is the first 16 hex digits of the sha256 of the uploaded bytes, so the same
content uploaded twice (under any name) is one video and is labeled once; the second key is
recorded in ``videos/{id}/aliases.json``. A video whose **content** we cannot label is quarantined with its reason
(``quarantine/{id}.json``, tasks/quarantine.py) and never reaches the other stages; a video the
**configuration** asks too much of (longer than ``video.max_seconds``, an fps that gives no frame)
is a configuration error, exit 2, and nothing is quarantined or written (tasks/video/limits.py;
issue 12, point 1).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import time

from tasks import layout
from tasks.config import PipelineConfig
from tasks.discovery import upload_time
from tasks.errors import DuplicateVideo, InputRejected, ObjectNotFound, PermanentError
from tasks.quarantine import clear_if_accepted
from tasks.stages.contract import StageOutput, StageResult, StageWriter
from tasks.storage import ObjectStore
from tasks.video.limits import check_limits
from tasks.video.probe import probe

log = logging.getLogger(__name__)


def content_id(path) -> tuple[str, str]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    return digest[:16], digest


def _record_alias(store: ObjectStore, video_id: str, key: str) -> None:
    akey = layout.aliases_key(video_id)
    try:
        aliases = store.get_json(akey)
    except ObjectNotFound:
        aliases = []
    if key not in aliases:
        aliases.append(key)
        store.put_json(akey, aliases)


def execute(*, store: ObjectStore, config: PipelineConfig, params: dict, force: bool = False) -> StageResult:
    from tasks.stages import runner

    key = params.get("key")
    if not key:
        raise PermanentError("ingest needs the object key of an uploaded video (e.g. raw/2026/clip.mp4)")
    if not store.exists(key):
        raise PermanentError(f"no uploaded object {key!r} in {store.uri()}; upload it first")
    run = config.hash
    t0 = time.perf_counter()
    with store.local_file(key) as path:
        video_id, sha256 = content_id(path)
        mkey = layout.manifest_key(video_id, run, "ingest")
        skey = layout.source_key(video_id)
        try:
            source = store.get_json(skey)
        except ObjectNotFound:
            source = None
        if source is not None and source["key"] != key:
            _record_alias(store, video_id, key)
            raise DuplicateVideo(video_id, key, source["key"])
        existing = runner.load_manifest(store, video_id, run, "ingest")
        if existing is not None and not force and source is not None:
            return runner._result_from_manifest(store, existing, "skipped", time.perf_counter() - t0)
        started = _dt.datetime.now(_dt.UTC)
        try:
            p = probe(path)
        except InputRejected as exc:
            runner.quarantine(store, video_id, key, "ingest", exc, run)
            raise
        check_limits(p, config)  # ConfigError: this configuration's problem, not the content's
        # a record of an earlier ingest of these very bytes that the probe now accepts (written
        # for max_seconds before issue 12, say) would keep a good video out of every later run
        clear_if_accepted(store, video_id, "ingest", "the content passes the probe")
        info = store.stat(key)
        # the recorded upload time (tasks/discovery.py), the one the nightly DAG's interval matched
        uploaded = upload_time(store, info)
        record = {
            "video_id": video_id, "key": key, "uri": store.uri(key), "sha256": sha256, "size": info.size,
            "uploaded": uploaded.isoformat(timespec="seconds"), "probe": p.to_json(),
        }
        # First writer wins: two keys with the same content ingested at once cannot both claim it.
        import json

        created = store.put_if_absent(skey, json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False).encode())
        if not created:
            current = store.get_json(skey)
            if current["key"] != key:
                _record_alias(store, video_id, key)
                raise DuplicateVideo(video_id, key, current["key"])
    runner.ensure_run_config(store, video_id, config)
    writer = StageWriter(store, layout.stage_prefix(video_id, run, "ingest"))
    out = StageOutput(
        outputs={"source": skey, "video": key},
        stats={"width": p.width, "height": p.height, "fps": round(p.fps, 4), "frames": p.n_frames,
               "duration": round(p.duration, 3), "layout": p.layout, "spherical_metadata": p.spherical},
        video_id=video_id,
    )
    manifest = runner.build_manifest("ingest", video_id, run, config, out, writer, {}, started, t0)
    store.put_json(mkey, manifest)
    log.info("ingested %s as video %s (%s, %dx%d, %d frames)", key, video_id, p.layout, p.width, p.height, p.n_frames)
    return runner._result_from_manifest(store, manifest, "done", time.perf_counter() - t0)
